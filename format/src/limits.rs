//! Limits on what a package may contain.
//!
//! Every package that crosses a trust boundary (an upload to the server, a download by a host
//! application, a scan job) is read against these limits before anything else is done with it,
//! so a hostile package cannot exhaust memory, disk or inodes, nor produce paths that some
//! operating system cannot represent. The constants are the format's ceiling: the builder
//! refuses to make a package that exceeds them, so every well-formed package passes a reader
//! using [`PackageLimits::default`]. Operators may tighten them (never usefully loosen them).

use serde::{Deserialize, Serialize};

/// Most files one package may hold.
///
/// Real plugins hold a manifest, an entry point and a few dozen assets; ten thousand leaves
/// room for asset-heavy plugins while bounding the per-entry bookkeeping (path sets for
/// duplicate detection, the file list in [`crate::package::PackageContents`]) to a few MiB,
/// and the inodes an install can consume.
pub const MAX_ENTRIES: usize = 10_000;

/// Most bytes of file contents one package may unpack to (1 GiB).
///
/// The package is stored and downloaded uncompressed, so this also bounds the download. It is
/// far above any plugin we expect, yet low enough that a host application can always stage an
/// install and a rollback copy on an ordinary disk.
pub const MAX_UNPACKED_SIZE: u64 = 1 << 30;

/// Most bytes `plugin.toml` may have (64 KiB).
///
/// The manifest is the only file a reader keeps in memory and parses, so it is kept small; a
/// generous manifest with a long dependency list and tool metadata is a few KiB.
pub const MAX_MANIFEST_SIZE: u64 = 64 * 1024;

/// Longest path of a file inside a package, in bytes of UTF-8 (240).
///
/// Windows' classic `MAX_PATH` is 260 UTF-16 units for the whole path, including the
/// install directory; a UTF-8 byte count is never below the UTF-16 unit count, so 240 bytes
/// always fit the package-relative part, and installers on systems with long-path support
/// have room for their prefix. It is also below the 256 bytes a ustar header can name.
pub const MAX_PATH_LEN: usize = 240;

/// Most components (directory levels plus the file name) of a path inside a package (32).
///
/// Deep trees are a known way to break recursive tools and to hide files from reviewers; no
/// plugin needs more than a handful of levels.
pub const MAX_PATH_DEPTH: usize = 32;

/// The limits a package reader enforces; the defaults are the constants of this module.
///
/// Deserializes from configuration with any field omitted taking its default, so a server
/// configuration can tighten one limit without repeating the others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PackageLimits {
    /// Most files in a package; see [`MAX_ENTRIES`].
    pub max_entries: usize,
    /// Most bytes of file contents in total; see [`MAX_UNPACKED_SIZE`].
    pub max_unpacked_size: u64,
    /// Most bytes of `plugin.toml`; see [`MAX_MANIFEST_SIZE`].
    pub max_manifest_size: u64,
    /// Longest path, in bytes; see [`MAX_PATH_LEN`].
    pub max_path_len: usize,
    /// Most path components; see [`MAX_PATH_DEPTH`].
    pub max_path_depth: usize,
}

impl Default for PackageLimits {
    fn default() -> Self {
        Self {
            max_entries: MAX_ENTRIES,
            max_unpacked_size: MAX_UNPACKED_SIZE,
            max_manifest_size: MAX_MANIFEST_SIZE,
            max_path_len: MAX_PATH_LEN,
            max_path_depth: MAX_PATH_DEPTH,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_named_constants() {
        let limits = PackageLimits::default();
        assert_eq!(limits.max_entries, MAX_ENTRIES);
        assert_eq!(limits.max_unpacked_size, MAX_UNPACKED_SIZE);
        assert_eq!(limits.max_manifest_size, MAX_MANIFEST_SIZE);
        assert_eq!(limits.max_path_len, MAX_PATH_LEN);
        assert_eq!(limits.max_path_depth, MAX_PATH_DEPTH);
    }

    #[test]
    fn configuration_can_tighten_one_limit() {
        let limits: PackageLimits =
            serde_json::from_str(r#"{ "max_unpacked_size": 1048576 }"#).unwrap();
        assert_eq!(limits.max_unpacked_size, 1 << 20);
        assert_eq!(limits.max_entries, MAX_ENTRIES);
        assert!(serde_json::from_str::<PackageLimits>(r#"{ "max_entries_typo": 1 }"#).is_err());
    }
}
