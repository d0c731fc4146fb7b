//! The package: a deterministic, uncompressed ustar archive with `plugin.toml` at its root.
//!
//! A package's identity is the SHA-256 of its bytes ([`PackageDigest`]); that digest is what
//! developers sign, what the store serves and what host applications verify. For the digest
//! to identify the *content* unambiguously, there must be exactly one byte sequence for a
//! given set of files. The canonical form below guarantees that, and the reader refuses
//! anything else (as [`PackageError::NotCanonical`]) rather than normalising it: two packages
//! with the same files therefore always have the same digest, a reviewer's approval of one
//! digest covers exactly one set of files, and nothing can ride along in header fields that
//! extraction ignores (owner names, timestamps, padding, extension records).
//!
//! Canonical form:
//! - entries are regular files only (directories are implied by paths), sorted by the bytes of
//!   their UTF-8 path, which uses `/` separators and passes [`check_package_path`];
//! - each header is POSIX ustar (`ustar\0`, version `00`), type `0`, mode `0644` or `0755`,
//!   uid and gid `0`, mtime `0`, empty owner names and link name, device numbers `0`;
//!   numbers are zero-padded octal ending in NUL, the checksum is six octal digits, NUL, space;
//! - a path longer than 100 bytes is split at the last `/` that leaves at most 155 bytes in the
//!   ustar prefix field; unused bytes are zero;
//! - file contents are padded with zeros to a 512-byte boundary;
//! - the archive ends with exactly two zero blocks and nothing after them.
//!
//! [`PackageBuilder`] writes this form; [`read_package`] checks it while streaming, keeping
//! only `plugin.toml` in memory; [`extract_package`] does the same while writing the files
//! below a directory.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use ring::digest::{Context, SHA256};

use crate::digest::{DigestingReader, DigestingWriter, FileDigest, PackageDigest};
use crate::limits::PackageLimits;
use crate::manifest::{MANIFEST_FILE_NAME, Manifest, ManifestError};

/// Size of a tar block: headers and content padding are multiples of it.
const BLOCK_SIZE: usize = 512;
/// Bytes read from the package or a source file at a time.
const CHUNK_SIZE: usize = 64 * 1024;
/// Largest size a ustar header can state in its 11 octal digits (8 GiB - 1).
const MAX_USTAR_FILE_SIZE: u64 = 0o777_7777_7777;

/// Mode of a non-executable file in a package.
pub const MODE_REGULAR: u32 = 0o644;
/// Mode of an executable file in a package.
pub const MODE_EXECUTABLE: u32 = 0o755;

/// Characters Windows refuses in file names (besides control characters and `\`).
const WINDOWS_INVALID_CHARACTERS: &[char] = &['<', '>', ':', '"', '|', '?', '*'];

/// Device names Windows resolves in every directory, with or without an extension.
const WINDOWS_RESERVED_NAMES: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "COM0", "COM1", "COM2", "COM3", "COM4",
    "COM5", "COM6", "COM7", "COM8", "COM9", "COM¹", "COM²", "COM³", "LPT0", "LPT1", "LPT2", "LPT3",
    "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9", "LPT¹", "LPT²", "LPT³",
];

/// Byte ranges of the ustar header fields.
mod field {
    use std::ops::Range;

    pub const NAME: Range<usize> = 0..100;
    pub const MODE: Range<usize> = 100..108;
    pub const UID: Range<usize> = 108..116;
    pub const GID: Range<usize> = 116..124;
    pub const SIZE: Range<usize> = 124..136;
    pub const MTIME: Range<usize> = 136..148;
    pub const CHECKSUM: Range<usize> = 148..156;
    pub const TYPE_FLAG: usize = 156;
    pub const LINK_NAME: Range<usize> = 157..257;
    pub const MAGIC: Range<usize> = 257..263;
    pub const VERSION: Range<usize> = 263..265;
    pub const UNAME: Range<usize> = 265..297;
    pub const GNAME: Range<usize> = 297..329;
    pub const DEV_MAJOR: Range<usize> = 329..337;
    pub const DEV_MINOR: Range<usize> = 337..345;
    pub const PREFIX: Range<usize> = 345..500;
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

/// Why a path cannot name a file in a package.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathProblem {
    /// The path is empty.
    #[error("is empty")]
    Empty,
    /// Longer than [`PackageLimits::max_path_len`] bytes.
    #[error("is {length} bytes long; the limit is {limit}")]
    TooLong {
        /// Length in bytes.
        length: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// More components than [`PackageLimits::max_path_depth`].
    #[error("has {depth} components; the limit is {limit}")]
    TooDeep {
        /// Number of components.
        depth: usize,
        /// The limit.
        limit: usize,
    },
    /// Starts with `/` or a drive letter such as `C:`.
    #[error("is absolute; paths in a package are relative to its root")]
    Absolute,
    /// Has a `..` component.
    #[error("has a `..` component, which could escape the install directory")]
    ParentDirComponent,
    /// Contains `\`, a separator on Windows only.
    #[error("contains a backslash; paths in a package use `/`")]
    Backslash,
    /// Contains a control character (including NUL).
    #[error("contains the control character {0:?}")]
    ControlCharacter(char),
    /// Has an empty or `.` component (`a//b`, `./a`, `a/`).
    #[error("is not canonical: it has an empty or `.` component (write `a/b`, not `./a//b/`)")]
    NotCanonical,
    /// Contains a character Windows does not allow in file names.
    #[error("contains {0:?}, which Windows does not allow in file names")]
    WindowsInvalidCharacter(char),
    /// A component ends in `.` or a space, which Windows silently strips.
    #[error("has the component {0:?} ending in a dot or space, which Windows strips")]
    TrailingDotOrSpace(String),
    /// A component is a Windows device name (`CON`, `nul.txt`, `COM1`…).
    #[error("has the component {0:?}, which Windows treats as a device")]
    WindowsReservedName(String),
}

/// Checks that `path` can name a file in a package, on every operating system.
///
/// The rules are those of the package reader: a relative, `/`-separated UTF-8 path of
/// normal components, within the length and depth limits, that means the same file on
/// Linux, macOS and Windows. The builder, the reader and the manifest's `plugin.entry` all
/// use this one function.
pub fn check_package_path(path: &str, limits: &PackageLimits) -> Result<(), PathProblem> {
    if path.is_empty() {
        return Err(PathProblem::Empty);
    }
    if path.len() > limits.max_path_len {
        return Err(PathProblem::TooLong {
            length: path.len(),
            limit: limits.max_path_len,
        });
    }
    if path.starts_with('/') || has_drive_prefix(path) {
        return Err(PathProblem::Absolute);
    }
    if path.contains('\\') {
        return Err(PathProblem::Backslash);
    }
    if let Some(control) = path.chars().find(|c| c.is_control()) {
        return Err(PathProblem::ControlCharacter(control));
    }
    let components: Vec<&str> = path.split('/').collect();
    if components.contains(&"..") {
        return Err(PathProblem::ParentDirComponent);
    }
    if components.iter().any(|c| c.is_empty() || *c == ".") {
        return Err(PathProblem::NotCanonical);
    }
    if components.len() > limits.max_path_depth {
        return Err(PathProblem::TooDeep {
            depth: components.len(),
            limit: limits.max_path_depth,
        });
    }
    for component in components {
        if let Some(bad) = component
            .chars()
            .find(|c| WINDOWS_INVALID_CHARACTERS.contains(c))
        {
            return Err(PathProblem::WindowsInvalidCharacter(bad));
        }
        if component.ends_with(['.', ' ']) {
            return Err(PathProblem::TrailingDotOrSpace(component.to_owned()));
        }
        if is_windows_device_name(component) {
            return Err(PathProblem::WindowsReservedName(component.to_owned()));
        }
    }
    Ok(())
}

/// `C:…`: absolute (or drive-relative, which is worse) on Windows.
fn has_drive_prefix(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':'
}

/// Windows maps these names to devices whatever the extension (`nul.txt`), ignoring case and
/// spaces before the extension.
fn is_windows_device_name(component: &str) -> bool {
    let stem = component
        .split('.')
        .next()
        .unwrap_or_default()
        .trim_end_matches(' ');
    WINDOWS_RESERVED_NAMES.iter().any(|reserved| {
        reserved.chars().count() == stem.chars().count()
            && reserved
                .chars()
                .zip(stem.chars())
                .all(|(r, s)| r.eq_ignore_ascii_case(&s))
    })
}

/// Tracks the paths seen so far, to refuse duplicates and collisions on case-insensitive
/// file systems (Windows, default macOS).
#[derive(Default)]
struct PathIndex {
    /// Lowercased path of every file, to the path as written.
    files: HashMap<String, String>,
    /// Lowercased path of every implied directory, to the first file below it.
    directories: HashMap<String, String>,
}

/// The key under which two paths name one file on some host's file system: normalised to
/// NFC (macOS compares names normalisation-insensitively), then upper- and lowercased.
/// Lowercasing alone misses pairs that Windows' uppercase table or macOS's case folding join:
/// `aΣ` lowercases to `aς` (a final sigma) and `aσ` stays `aσ`, though both uppercase to `AΣ`;
/// the Kelvin sign `K` and `k` lowercase alike but uppercase apart. Joining a pair that some
/// file system keeps apart (`ß` and `SS`) only refuses a package that was ambiguous anyway.
fn collision_key(path: &str) -> String {
    use unicode_normalization::UnicodeNormalization as _;
    path.nfc().collect::<String>().to_uppercase().to_lowercase()
}

impl PathIndex {
    fn insert(&mut self, path: &str) -> Result<(), PackageError> {
        let folded = collision_key(path);
        if let Some(existing) = self.files.get(&folded) {
            return Err(if existing == path {
                PackageError::DuplicatePath {
                    path: path.to_owned(),
                }
            } else {
                PackageError::CaseCollision {
                    path: path.to_owned(),
                    existing: existing.clone(),
                }
            });
        }
        if let Some(existing) = self.directories.get(&folded) {
            return Err(PackageError::FileDirectoryConflict {
                path: path.to_owned(),
                existing: existing.clone(),
            });
        }
        let ancestors: Vec<&str> = folded
            .match_indices('/')
            .map(|(at, _)| &folded[..at])
            .collect();
        for ancestor in &ancestors {
            if let Some(existing) = self.files.get(*ancestor) {
                return Err(PackageError::FileDirectoryConflict {
                    path: path.to_owned(),
                    existing: existing.clone(),
                });
            }
        }
        for ancestor in ancestors {
            self.directories
                .entry(ancestor.to_owned())
                .or_insert_with(|| path.to_owned());
        }
        self.files.insert(folded, path.to_owned());
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// A rule of the canonical form (see the [module documentation](self)) that an entry breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanonicalRule {
    /// Entries must be sorted by the bytes of their paths.
    Order,
    /// Headers must be POSIX ustar (`ustar\0` `00`), not GNU or pre-POSIX.
    UstarMagic,
    /// Regular files must use type flag `0`, not the pre-POSIX NUL.
    TypeFlag,
    /// Mode must be `0644` or `0755`, without file-type bits.
    Mode,
    /// uid and gid must be 0.
    Owner,
    /// Owner and group names must be empty.
    OwnerNames,
    /// mtime must be 0.
    Mtime,
    /// A regular file must not have a link name.
    LinkName,
    /// Device numbers must be 0.
    DeviceNumbers,
    /// A numeric field cannot be read.
    NumericField,
    /// Everything else in the header (path split, number encoding, unused bytes) must be
    /// exactly what the builder writes.
    HeaderLayout,
    /// Padding after file contents must be zeros.
    ContentPadding,
}

impl fmt::Display for CanonicalRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Order => "entries must be sorted by path",
            Self::UstarMagic => "headers must be POSIX ustar",
            Self::TypeFlag => "regular files must have type flag `0`",
            Self::Mode => "mode must be 0644 or 0755",
            Self::Owner => "uid and gid must be 0",
            Self::OwnerNames => "owner and group names must be empty",
            Self::Mtime => "mtime must be 0",
            Self::LinkName => "a regular file must not have a link name",
            Self::DeviceNumbers => "device numbers must be 0",
            Self::NumericField => "numeric fields must be octal",
            Self::HeaderLayout => "the header must be laid out exactly as the builder writes it",
            Self::ContentPadding => "padding after file contents must be zeros",
        })
    }
}

/// Why a package was refused, or could not be built or extracted.
///
/// Paths inside a package are shown with `{:?}` so that hostile names cannot inject control
/// characters into logs.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// An entry's path is empty.
    #[error("an entry has an empty path")]
    EmptyPath {
        /// The path (empty).
        path: String,
    },
    /// A path is longer than the limit.
    #[error("{path:?} is {length} bytes long; the limit is {limit}")]
    PathTooLong {
        /// The path.
        path: String,
        /// Its length in bytes.
        length: usize,
        /// The limit.
        limit: usize,
    },
    /// A path has more components than the limit.
    #[error("{path:?} has {depth} components; the limit is {limit}")]
    PathTooDeep {
        /// The path.
        path: String,
        /// Its number of components.
        depth: usize,
        /// The limit.
        limit: usize,
    },
    /// A path starts with `/` or a drive letter.
    #[error("{path:?} is absolute; paths in a package are relative to its root")]
    AbsolutePath {
        /// The path.
        path: String,
    },
    /// A path has a `..` component.
    #[error("{path:?} has a `..` component, which could escape the install directory")]
    ParentDirComponent {
        /// The path.
        path: String,
    },
    /// A path contains `\`.
    #[error("{path:?} contains a backslash; paths in a package use `/`")]
    Backslash {
        /// The path.
        path: String,
    },
    /// A path contains a control character, or NUL in the middle of a header name field.
    #[error("{path:?} contains the control character {character:?}")]
    ControlCharacter {
        /// The path.
        path: String,
        /// The first control character.
        character: char,
    },
    /// A path has an empty or `.` component, e.g. `./a`, `a//b` or `a/`.
    #[error("{path:?} is not a canonical path: it has an empty or `.` component")]
    NonCanonicalPath {
        /// The path.
        path: String,
    },
    /// A path contains one of `<>:"|?*`.
    #[error("{path:?} contains {character:?}, which Windows does not allow in file names")]
    WindowsInvalidCharacter {
        /// The path.
        path: String,
        /// The character.
        character: char,
    },
    /// A component ends in `.` or a space.
    #[error(
        "{path:?} has the component {component:?} ending in a dot or space, which Windows strips"
    )]
    TrailingDotOrSpace {
        /// The path.
        path: String,
        /// The component.
        component: String,
    },
    /// A component is a Windows device name.
    #[error("{path:?} has the component {component:?}, which Windows treats as a device")]
    WindowsReservedName {
        /// The path.
        path: String,
        /// The component.
        component: String,
    },
    /// A path is not valid UTF-8.
    #[error("{path:?} is not valid UTF-8")]
    NonUtf8Path {
        /// The path, with invalid bytes replaced.
        path: String,
    },
    /// A path that passes the checks but cannot be stored in a ustar header (a file name over
    /// 100 bytes, or no `/` that splits it into 155 + 100 bytes).
    #[error(
        "{path:?} cannot be stored in a ustar header: file names are limited to 100 bytes and directories to 155"
    )]
    PathNotRepresentable {
        /// The path.
        path: String,
    },
    /// A symbolic link.
    #[error("{path:?} is a symbolic link (to {target:?}); packages hold regular files only")]
    Symlink {
        /// The link's path.
        path: String,
        /// Where it points.
        target: String,
    },
    /// A hard link.
    #[error("{path:?} is a hard link (to {target:?}); packages hold regular files only")]
    HardLink {
        /// The link's path.
        path: String,
        /// The file it links to.
        target: String,
    },
    /// A character or block device.
    #[error("{path:?} is a device file; packages hold regular files only")]
    DeviceFile {
        /// The path.
        path: String,
    },
    /// A named pipe.
    #[error("{path:?} is a FIFO; packages hold regular files only")]
    Fifo {
        /// The path.
        path: String,
    },
    /// A directory entry; canonical packages imply directories from file paths.
    #[error(
        "{path:?} is a directory entry; canonical packages have none (directories are implied by file paths)"
    )]
    DirectoryEntry {
        /// The path.
        path: String,
    },
    /// A PAX (`x`, `g`) or GNU (`L`, `K`) extension header, which could override the path or
    /// other fields of the following entry.
    #[error(
        "{path:?} is a {type_flag:?} extension header; canonical packages use plain ustar headers"
    )]
    ExtensionHeader {
        /// The header's own name field.
        path: String,
        /// The type flag.
        type_flag: char,
    },
    /// Any other entry type (contiguous files, GNU sparse files, volume labels…).
    #[error("{path:?} has the unsupported entry type {type_flag:?}")]
    UnsupportedEntryType {
        /// The path.
        path: String,
        /// The type flag.
        type_flag: char,
    },
    /// A source directory entry that is neither a file, a directory nor a symlink.
    #[error(
        "{path:?} is not a regular file (socket, device or FIFO); packages hold regular files only"
    )]
    NotARegularFile {
        /// The path, relative to the source directory.
        path: String,
    },
    /// The same path twice.
    #[error("{path:?} appears twice")]
    DuplicatePath {
        /// The path.
        path: String,
    },
    /// Two paths that differ only in letter case, which would overwrite each other on Windows
    /// and macOS.
    #[error(
        "{path:?} and {existing:?} differ only in case or Unicode normalisation, so they would be the same file on Windows or macOS"
    )]
    CaseCollision {
        /// The later path.
        path: String,
        /// The earlier path.
        existing: String,
    },
    /// A file whose path is also a directory of another file (`a` and `a/b`).
    #[error("{path:?} and {existing:?} need the same path to be both a file and a directory")]
    FileDirectoryConflict {
        /// The later path.
        path: String,
        /// The earlier path.
        existing: String,
    },
    /// More entries than [`PackageLimits::max_entries`].
    #[error("the package has more than {limit} entries")]
    TooManyEntries {
        /// The limit.
        limit: usize,
    },
    /// File contents add up to more than [`PackageLimits::max_unpacked_size`]; checked from
    /// the header, before the contents are read.
    #[error("{path:?} brings the unpacked size to {size} bytes; the limit is {limit}")]
    UnpackedSizeTooLarge {
        /// The entry that crossed the limit.
        path: String,
        /// The unpacked size including that entry.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// `plugin.toml` is larger than [`PackageLimits::max_manifest_size`].
    #[error("plugin.toml is {size} bytes; the limit is {limit}")]
    ManifestTooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// There is no `plugin.toml` at all.
    #[error("the package has no plugin.toml at its root")]
    MissingManifest,
    /// There is a `plugin.toml`, but not at the root.
    #[error("plugin.toml must be at the root of the package, found only {path:?}")]
    ManifestNotAtRoot {
        /// Where it was found.
        path: String,
    },
    /// `plugin.toml` is not UTF-8.
    #[error("plugin.toml is not valid UTF-8")]
    ManifestNotUtf8,
    /// `plugin.toml` breaks the manifest rules.
    #[error("invalid plugin.toml: {0}")]
    InvalidManifest(#[from] ManifestError),
    /// `plugin.entry` names a file that is not in the package.
    #[error("plugin.entry {entry:?} is not a file in the package")]
    MissingEntryPoint {
        /// The entry point named by the manifest.
        entry: String,
    },
    /// A header's checksum does not match its contents.
    #[error("the header at byte {offset} ({path:?}) has a wrong checksum")]
    ChecksumMismatch {
        /// Offset of the header in the package.
        offset: u64,
        /// The header's path, with invalid bytes replaced.
        path: String,
    },
    /// An entry breaks the canonical form.
    #[error("{path:?} is not in canonical form: {rule}")]
    NotCanonical {
        /// The entry's path, with invalid bytes replaced.
        path: String,
        /// The rule it breaks.
        rule: CanonicalRule,
    },
    /// The input ends before the end-of-archive marker.
    #[error("the package is truncated: it ends at byte {offset} before the end-of-archive marker")]
    Truncated {
        /// Where the input ended.
        offset: u64,
    },
    /// Bytes follow the end-of-archive marker (two zero blocks), or a single zero block is
    /// followed by data.
    #[error("unexpected data at byte {offset}, after the end-of-archive marker")]
    TrailingData {
        /// Offset of the first unexpected byte or block.
        offset: u64,
    },
    /// Reading the package failed.
    #[error("cannot read the package: {0}")]
    Read(#[source] io::Error),
    /// Writing the package failed.
    #[error("cannot write the package: {0}")]
    Write(#[source] io::Error),
    /// Reading a source file or directory for the builder failed.
    #[error("cannot read {path:?}: {source}")]
    Source {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A source file changed size while the package was being written.
    #[error("{path:?} changed while the package was being written")]
    SourceChanged {
        /// The path, relative to the source directory.
        path: String,
    },
    /// Writing an extracted file or directory failed.
    #[error("cannot extract to {path:?}: {source}")]
    Extract {
        /// The destination file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The destination already holds something other than a directory (for example a
    /// symbolic link) where the package needs a directory.
    #[error("{path:?} exists and is not a directory; extraction never follows links")]
    ExtractThroughLink {
        /// The destination path.
        path: PathBuf,
    },
}

/// Turns a [`PathProblem`] into the matching [`PackageError`] variant for `path`.
fn path_error(path: &str, problem: PathProblem) -> PackageError {
    let path = path.to_owned();
    match problem {
        PathProblem::Empty => PackageError::EmptyPath { path },
        PathProblem::TooLong { length, limit } => PackageError::PathTooLong {
            path,
            length,
            limit,
        },
        PathProblem::TooDeep { depth, limit } => PackageError::PathTooDeep { path, depth, limit },
        PathProblem::Absolute => PackageError::AbsolutePath { path },
        PathProblem::ParentDirComponent => PackageError::ParentDirComponent { path },
        PathProblem::Backslash => PackageError::Backslash { path },
        PathProblem::ControlCharacter(character) => {
            PackageError::ControlCharacter { path, character }
        }
        PathProblem::NotCanonical => PackageError::NonCanonicalPath { path },
        PathProblem::WindowsInvalidCharacter(character) => {
            PackageError::WindowsInvalidCharacter { path, character }
        }
        PathProblem::TrailingDotOrSpace(component) => {
            PackageError::TrailingDotOrSpace { path, component }
        }
        PathProblem::WindowsReservedName(component) => {
            PackageError::WindowsReservedName { path, component }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------------------------

/// Splits a path into the ustar prefix and name fields, the way GNU tar and the `tar` crate
/// do: the whole path in `name` if it fits, otherwise the longest directory part that fits
/// in `prefix`.
fn split_ustar_path(path: &str) -> Option<(&str, &str)> {
    let name_len = field::NAME.len();
    let prefix_len = field::PREFIX.len();
    if path.len() <= name_len {
        return Some(("", path));
    }
    let (prefix, name) = path
        .rmatch_indices('/')
        .map(|(at, _)| at)
        .find(|&at| at <= prefix_len)
        .map(|at| (&path[..at], &path[at + 1..]))?;
    (!prefix.is_empty() && !name.is_empty() && name.len() <= name_len).then_some((prefix, name))
}

/// Writes `value` as zero-padded octal followed by NUL, filling the field.
fn write_octal(slot: &mut [u8], value: u64) {
    let digits = slot.len() - 1;
    let text = format!("{value:0digits$o}");
    slot[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    slot[digits] = 0;
}

/// The sum of the header bytes with the checksum field counted as spaces.
fn header_checksum(header: &[u8; BLOCK_SIZE]) -> u64 {
    header
        .iter()
        .enumerate()
        .map(|(at, &byte)| {
            if field::CHECKSUM.contains(&at) {
                u64::from(b' ')
            } else {
                u64::from(byte)
            }
        })
        .sum()
}

/// The one header the canonical form allows for a file.
fn canonical_header(
    path: &str,
    size: u64,
    executable: bool,
) -> Result<[u8; BLOCK_SIZE], PackageError> {
    let (prefix, name) =
        split_ustar_path(path).ok_or_else(|| PackageError::PathNotRepresentable {
            path: path.to_owned(),
        })?;
    if size > MAX_USTAR_FILE_SIZE {
        return Err(PackageError::UnpackedSizeTooLarge {
            path: path.to_owned(),
            size,
            limit: MAX_USTAR_FILE_SIZE,
        });
    }
    let mut header = [0u8; BLOCK_SIZE];
    header[..name.len()].copy_from_slice(name.as_bytes());
    let mode = if executable {
        MODE_EXECUTABLE
    } else {
        MODE_REGULAR
    };
    write_octal(&mut header[field::MODE], u64::from(mode));
    write_octal(&mut header[field::UID], 0);
    write_octal(&mut header[field::GID], 0);
    write_octal(&mut header[field::SIZE], size);
    write_octal(&mut header[field::MTIME], 0);
    header[field::TYPE_FLAG] = b'0';
    header[field::MAGIC].copy_from_slice(b"ustar\0");
    header[field::VERSION].copy_from_slice(b"00");
    write_octal(&mut header[field::DEV_MAJOR], 0);
    write_octal(&mut header[field::DEV_MINOR], 0);
    header[field::PREFIX][..prefix.len()].copy_from_slice(prefix.as_bytes());
    // Six digits, NUL, space: the traditional layout that every tar reads.
    let checksum = format!("{:06o}\0 ", header_checksum(&header));
    header[field::CHECKSUM].copy_from_slice(checksum.as_bytes());
    Ok(header)
}

/// Reads a numeric header field: octal (with the leading spaces and NUL/space terminators
/// historical tars write) or GNU base-256. Only canonical encodings survive the final
/// header comparison; leniency here just lets limits and precise errors come first.
fn parse_numeric(slot: &[u8]) -> Option<u64> {
    let first = *slot.first()?;
    if first & 0x80 != 0 {
        // Base-256: a positive number has the marker 0x80 and big-endian bytes.
        if first != 0x80 {
            return None;
        }
        return slot[1..].iter().try_fold(0u64, |value, &byte| {
            value.checked_mul(256)?.checked_add(u64::from(byte))
        });
    }
    let text = slot
        .iter()
        .skip_while(|&&b| b == b' ')
        .take_while(|&&b| b != 0 && b != b' ');
    let mut value = 0u64;
    for &byte in text {
        if !(b'0'..=b'7').contains(&byte) {
            return None;
        }
        value = value.checked_mul(8)?.checked_add(u64::from(byte - b'0'))?;
    }
    Some(value)
}

/// A NUL-terminated text field, or `None` if non-zero bytes follow the NUL.
fn text_field(slot: &[u8]) -> Option<&[u8]> {
    let end = slot.iter().position(|&b| b == 0).unwrap_or(slot.len());
    slot[end..].iter().all(|&b| b == 0).then(|| &slot[..end])
}

/// The path a header names, with invalid UTF-8 replaced, for error messages.
fn lossy_header_path(header: &[u8; BLOCK_SIZE]) -> String {
    let until_nul = |slot: &[u8]| {
        let end = slot.iter().position(|&b| b == 0).unwrap_or(slot.len());
        String::from_utf8_lossy(&slot[..end]).into_owned()
    };
    let name = until_nul(&header[field::NAME]);
    let prefix = until_nul(&header[field::PREFIX]);
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    }
}

fn lossy_text(slot: &[u8]) -> String {
    let end = slot.iter().position(|&b| b == 0).unwrap_or(slot.len());
    String::from_utf8_lossy(&slot[..end]).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// A file of a package, as recorded by the reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageFile {
    /// Path inside the package (`/`-separated, relative).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Whether the file has mode `0755` (and is installed executable).
    pub executable: bool,
    /// SHA-256 of the contents.
    pub sha256: FileDigest,
}

/// What a successful read of a package established.
#[derive(Clone, Debug)]
pub struct PackageContents {
    /// The validated manifest.
    pub manifest: Manifest,
    /// The text of `plugin.toml`, exactly as in the package.
    pub manifest_text: String,
    /// Every file, `plugin.toml` included, in package order (sorted by path).
    pub files: Vec<PackageFile>,
    /// SHA-256 of the whole package.
    pub digest: PackageDigest,
    /// Length of the package in bytes.
    pub length: u64,
    /// Total size of the file contents.
    pub unpacked_size: u64,
}

impl PackageContents {
    /// The file at `path`, if the package has it.
    pub fn file(&self, path: &str) -> Option<&PackageFile> {
        self.files
            .binary_search_by(|file| file.path.as_str().cmp(path))
            .ok()
            .and_then(|at| self.files.get(at))
    }
}

/// Reads and checks a package from a stream, without keeping file contents.
///
/// Memory use is independent of file sizes: contents are hashed in chunks and dropped; only
/// `plugin.toml` (at most [`PackageLimits::max_manifest_size`]) and the list of paths are
/// kept. Every limit is enforced from the headers before the corresponding bytes are read.
/// The digest covers every byte of the stream, which must end right after the
/// end-of-archive marker. Wrap unbuffered sources (files, sockets) in a `BufReader`.
pub fn read_package(
    reader: impl Read,
    limits: &PackageLimits,
) -> Result<PackageContents, PackageError> {
    read_with_sink(reader, limits, &mut DiscardingSink)
}

/// Reads and checks a package like [`read_package`], writing its files below `destination`.
///
/// `destination` must be an existing directory that only this process writes to, normally a
/// fresh staging directory: files are created with `create_new` (nothing is overwritten),
/// directories are created one level at a time and an existing path component that is not a
/// real directory (a symbolic link, for instance) is refused rather than followed. Files are
/// synced to disk before this returns. On error, files written so far stay in place; discard
/// the staging directory. The package is only trustworthy once `digest` has been checked
/// against a signed digest, so do not use the files before that.
pub fn extract_package(
    reader: impl Read,
    limits: &PackageLimits,
    destination: &Path,
) -> Result<PackageContents, PackageError> {
    let metadata = fs::metadata(destination).map_err(|source| PackageError::Extract {
        path: destination.to_owned(),
        source,
    })?;
    if !metadata.is_dir() {
        return Err(PackageError::ExtractThroughLink {
            path: destination.to_owned(),
        });
    }
    let mut sink = ExtractingSink {
        destination: destination.to_owned(),
        current: None,
    };
    read_with_sink(reader, limits, &mut sink)
}

/// Receives the files of a package as the reader checks them.
trait EntrySink {
    /// A file starts; its path has passed every check.
    fn begin_file(&mut self, path: &str, executable: bool) -> Result<(), PackageError>;
    /// The next piece of the current file's contents.
    fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), PackageError>;
    /// The current file is complete.
    fn end_file(&mut self) -> Result<(), PackageError>;
}

struct DiscardingSink;

impl EntrySink for DiscardingSink {
    fn begin_file(&mut self, _: &str, _: bool) -> Result<(), PackageError> {
        Ok(())
    }
    fn write_chunk(&mut self, _: &[u8]) -> Result<(), PackageError> {
        Ok(())
    }
    fn end_file(&mut self) -> Result<(), PackageError> {
        Ok(())
    }
}

struct ExtractingSink {
    destination: PathBuf,
    current: Option<(PathBuf, File)>,
}

impl ExtractingSink {
    /// Makes sure `directory` is a real directory, creating it if absent; never follows links.
    fn ensure_directory(directory: &Path) -> Result<(), PackageError> {
        let extract_error = |source| PackageError::Extract {
            path: directory.to_owned(),
            source,
        };
        match fs::symlink_metadata(directory) {
            Ok(metadata) if metadata.file_type().is_dir() => Ok(()),
            Ok(_) => Err(PackageError::ExtractThroughLink {
                path: directory.to_owned(),
            }),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(directory).map_err(extract_error)
            }
            Err(error) => Err(extract_error(error)),
        }
    }
}

impl EntrySink for ExtractingSink {
    fn begin_file(&mut self, path: &str, executable: bool) -> Result<(), PackageError> {
        let mut target = self.destination.clone();
        let components: Vec<&str> = path.split('/').collect();
        let (file_name, directories) = components
            .split_last()
            .ok_or_else(|| path_error(path, PathProblem::Empty))?;
        for directory in directories {
            target.push(directory);
            Self::ensure_directory(&target)?;
        }
        target.push(file_name);
        let mut options = OpenOptions::new();
        // create_new fails on any existing path, symbolic links included, so an attacker's
        // pre-placed link cannot redirect the write.
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(if executable {
                MODE_EXECUTABLE
            } else {
                MODE_REGULAR
            });
        }
        #[cfg(not(unix))]
        let _ = executable;
        let file = options
            .open(&target)
            .map_err(|source| PackageError::Extract {
                path: target.clone(),
                source,
            })?;
        self.current = Some((target, file));
        Ok(())
    }

    fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), PackageError> {
        if let Some((path, file)) = &mut self.current {
            file.write_all(chunk)
                .map_err(|source| PackageError::Extract {
                    path: path.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    fn end_file(&mut self) -> Result<(), PackageError> {
        if let Some((path, file)) = self.current.take() {
            file.sync_all()
                .map_err(|source| PackageError::Extract { path, source })?;
        }
        Ok(())
    }
}

/// Reads exactly one block, or reports where the input ended.
fn read_block(input: &mut impl Read, block: &mut [u8], offset: u64) -> Result<(), PackageError> {
    input.read_exact(block).map_err(|error| {
        if error.kind() == io::ErrorKind::UnexpectedEof {
            PackageError::Truncated { offset }
        } else {
            PackageError::Read(error)
        }
    })
}

/// What a header allows the reader to do next.
struct CheckedHeader {
    path: String,
    size: u64,
    executable: bool,
}

/// The state of one pass over a package.
struct PackageReader<'a, R> {
    input: DigestingReader<R>,
    limits: &'a PackageLimits,
    paths: PathIndex,
    files: Vec<PackageFile>,
    unpacked_size: u64,
    manifest: Option<(String, Manifest)>,
    nested_manifest: Option<String>,
}

fn read_with_sink(
    reader: impl Read,
    limits: &PackageLimits,
    sink: &mut dyn EntrySink,
) -> Result<PackageContents, PackageError> {
    let mut state = PackageReader {
        input: DigestingReader::new(reader),
        limits,
        paths: PathIndex::default(),
        files: Vec::new(),
        unpacked_size: 0,
        manifest: None,
        nested_manifest: None,
    };
    let mut chunk = vec![0u8; CHUNK_SIZE];
    loop {
        let offset = state.input.length();
        let mut header = [0u8; BLOCK_SIZE];
        read_block(&mut state.input, &mut header, offset)?;
        if header.iter().all(|&b| b == 0) {
            state.read_end_of_archive()?;
            break;
        }
        let checked = state.check_header(&header, offset)?;
        state.read_contents(checked, &mut chunk, sink)?;
    }
    state.finish()
}

impl<R: Read> PackageReader<'_, R> {
    /// Checks one header, in an order that reports the most specific problem first and
    /// enforces every limit before reading the entry's contents.
    fn check_header(
        &mut self,
        header: &[u8; BLOCK_SIZE],
        offset: u64,
    ) -> Result<CheckedHeader, PackageError> {
        let lossy_path = lossy_header_path(header);
        let not_canonical = |rule| PackageError::NotCanonical {
            path: lossy_path.clone(),
            rule,
        };

        if parse_numeric(&header[field::CHECKSUM]) != Some(header_checksum(header)) {
            return Err(PackageError::ChecksumMismatch {
                offset,
                path: lossy_path,
            });
        }
        if self.files.len() >= self.limits.max_entries {
            return Err(PackageError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }

        let type_flag = header[field::TYPE_FLAG];
        let link_target = || lossy_text(&header[field::LINK_NAME]);
        match type_flag {
            b'0' => {}
            0 => return Err(not_canonical(CanonicalRule::TypeFlag)),
            b'1' => {
                return Err(PackageError::HardLink {
                    path: lossy_path,
                    target: link_target(),
                });
            }
            b'2' => {
                return Err(PackageError::Symlink {
                    path: lossy_path,
                    target: link_target(),
                });
            }
            b'3' | b'4' => return Err(PackageError::DeviceFile { path: lossy_path }),
            b'5' => return Err(PackageError::DirectoryEntry { path: lossy_path }),
            b'6' => return Err(PackageError::Fifo { path: lossy_path }),
            b'x' | b'g' | b'L' | b'K' => {
                return Err(PackageError::ExtensionHeader {
                    path: lossy_path,
                    type_flag: char::from(type_flag),
                });
            }
            other => {
                return Err(PackageError::UnsupportedEntryType {
                    path: lossy_path,
                    type_flag: char::from(other),
                });
            }
        }
        if &header[field::MAGIC] != b"ustar\0" || &header[field::VERSION] != b"00" {
            return Err(not_canonical(CanonicalRule::UstarMagic));
        }

        let path = self.header_path(header, &lossy_path)?;
        check_package_path(&path, self.limits).map_err(|problem| path_error(&path, problem))?;
        self.paths.insert(&path)?;
        if self
            .files
            .last()
            .is_some_and(|previous| previous.path.as_str() > path.as_str())
        {
            return Err(not_canonical(CanonicalRule::Order));
        }

        let size = parse_numeric(&header[field::SIZE])
            .ok_or_else(|| not_canonical(CanonicalRule::NumericField))?;
        let unpacked_size = self.unpacked_size.saturating_add(size);
        if unpacked_size > self.limits.max_unpacked_size {
            return Err(PackageError::UnpackedSizeTooLarge {
                path,
                size: unpacked_size,
                limit: self.limits.max_unpacked_size,
            });
        }
        if path == MANIFEST_FILE_NAME && size > self.limits.max_manifest_size {
            return Err(PackageError::ManifestTooLarge {
                size,
                limit: self.limits.max_manifest_size,
            });
        }

        let number = |range| {
            parse_numeric(&header[range]).ok_or_else(|| not_canonical(CanonicalRule::NumericField))
        };
        let executable = match number(field::MODE)? {
            mode if mode == u64::from(MODE_REGULAR) => false,
            mode if mode == u64::from(MODE_EXECUTABLE) => true,
            _ => return Err(not_canonical(CanonicalRule::Mode)),
        };
        if number(field::UID)? != 0 || number(field::GID)? != 0 {
            return Err(not_canonical(CanonicalRule::Owner));
        }
        if number(field::MTIME)? != 0 {
            return Err(not_canonical(CanonicalRule::Mtime));
        }
        if header[field::UNAME]
            .iter()
            .chain(&header[field::GNAME])
            .any(|&b| b != 0)
        {
            return Err(not_canonical(CanonicalRule::OwnerNames));
        }
        if header[field::LINK_NAME].iter().any(|&b| b != 0) {
            return Err(not_canonical(CanonicalRule::LinkName));
        }
        if number(field::DEV_MAJOR)? != 0 || number(field::DEV_MINOR)? != 0 {
            return Err(not_canonical(CanonicalRule::DeviceNumbers));
        }
        // The decisive check: the header must be byte for byte the one the builder writes
        // for this path, size and mode, so no other encoding of the same file exists.
        if canonical_header(&path, size, executable)? != *header {
            return Err(not_canonical(CanonicalRule::HeaderLayout));
        }

        self.unpacked_size = unpacked_size;
        Ok(CheckedHeader {
            path,
            size,
            executable,
        })
    }

    /// The path of a ustar header: `prefix/name`, or `name` alone when the prefix is empty.
    fn header_path(
        &self,
        header: &[u8; BLOCK_SIZE],
        lossy_path: &str,
    ) -> Result<String, PackageError> {
        // Bytes after a NUL would be invisible to most tools: treat them as a NUL in the path.
        let nul_in_path = || PackageError::ControlCharacter {
            path: lossy_path.to_owned(),
            character: '\0',
        };
        let name = text_field(&header[field::NAME]).ok_or_else(nul_in_path)?;
        let prefix = text_field(&header[field::PREFIX]).ok_or_else(nul_in_path)?;
        let mut bytes = Vec::with_capacity(prefix.len() + 1 + name.len());
        if !prefix.is_empty() {
            bytes.extend_from_slice(prefix);
            bytes.push(b'/');
        }
        bytes.extend_from_slice(name);
        String::from_utf8(bytes).map_err(|_| PackageError::NonUtf8Path {
            path: lossy_path.to_owned(),
        })
    }

    /// Streams one file's contents to the sink, hashing them, then checks the padding.
    fn read_contents(
        &mut self,
        entry: CheckedHeader,
        chunk: &mut [u8],
        sink: &mut dyn EntrySink,
    ) -> Result<(), PackageError> {
        let is_manifest = entry.path == MANIFEST_FILE_NAME;
        if !is_manifest
            && entry.path.rsplit('/').next() == Some(MANIFEST_FILE_NAME)
            && self.nested_manifest.is_none()
        {
            self.nested_manifest = Some(entry.path.clone());
        }
        sink.begin_file(&entry.path, entry.executable)?;
        let mut hasher = Context::new(&SHA256);
        let mut manifest_bytes = Vec::new();
        let mut remaining = entry.size;
        while remaining > 0 {
            let want = usize::try_from(remaining).map_or(chunk.len(), |r| r.min(chunk.len()));
            let piece = &mut chunk[..want];
            let offset = self.input.length();
            read_block(&mut self.input, piece, offset)?;
            hasher.update(piece);
            if is_manifest {
                manifest_bytes.extend_from_slice(piece);
            }
            sink.write_chunk(piece)?;
            remaining -= want as u64;
        }
        sink.end_file()?;

        let padding = (BLOCK_SIZE - (entry.size % BLOCK_SIZE as u64) as usize) % BLOCK_SIZE;
        if padding > 0 {
            let piece = &mut chunk[..padding];
            let offset = self.input.length();
            read_block(&mut self.input, piece, offset)?;
            if piece.iter().any(|&b| b != 0) {
                return Err(PackageError::NotCanonical {
                    path: entry.path,
                    rule: CanonicalRule::ContentPadding,
                });
            }
        }

        if is_manifest {
            let text =
                String::from_utf8(manifest_bytes).map_err(|_| PackageError::ManifestNotUtf8)?;
            let manifest = Manifest::parse(&text)?;
            self.manifest = Some((text, manifest));
        }
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(hasher.finish().as_ref());
        self.files.push(PackageFile {
            path: entry.path,
            size: entry.size,
            executable: entry.executable,
            sha256: FileDigest::from_bytes(sha256),
        });
        Ok(())
    }

    /// After a first zero block: a second one, then the end of the input.
    fn read_end_of_archive(&mut self) -> Result<(), PackageError> {
        let offset = self.input.length();
        let mut block = [0u8; BLOCK_SIZE];
        read_block(&mut self.input, &mut block, offset)?;
        if block.iter().any(|&b| b != 0) {
            return Err(PackageError::TrailingData { offset });
        }
        // One byte is enough to tell; never read an attacker's trailing gigabytes.
        let offset = self.input.length();
        let mut probe = [0u8; 1];
        loop {
            match self.input.read(&mut probe) {
                Ok(0) => return Ok(()),
                Ok(_) => return Err(PackageError::TrailingData { offset }),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(PackageError::Read(error)),
            }
        }
    }

    fn finish(self) -> Result<PackageContents, PackageError> {
        let Some((manifest_text, manifest)) = self.manifest else {
            return Err(match self.nested_manifest {
                Some(path) => PackageError::ManifestNotAtRoot { path },
                None => PackageError::MissingManifest,
            });
        };
        if self
            .files
            .binary_search_by(|file| file.path.as_str().cmp(manifest.entry()))
            .is_err()
        {
            return Err(PackageError::MissingEntryPoint {
                entry: manifest.entry().to_owned(),
            });
        }
        let (digest, length) = self.input.finish();
        Ok(PackageContents {
            manifest,
            manifest_text,
            files: self.files,
            digest,
            length,
            unpacked_size: self.unpacked_size,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------------------------

/// Where a file's contents come from while building.
enum SourceContents {
    Memory(Vec<u8>),
    Disk(PathBuf),
}

/// A file that will go into the package.
struct SourceFile {
    path: String,
    size: u64,
    executable: bool,
    contents: SourceContents,
}

/// Builds canonical packages.
///
/// Construction checks everything the reader checks (with [`PackageLimits::default`]):
/// paths, collisions, limits, the manifest and its entry point, so a builder that was
/// created always writes a package that [`read_package`] accepts. Writing streams file
/// contents from disk; only `plugin.toml` is held in memory.
pub struct PackageBuilder {
    files: Vec<SourceFile>,
    manifest: Manifest,
}

impl fmt::Debug for PackageBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PackageBuilder")
            .field("plugin", &self.manifest.id())
            .field("version", &self.manifest.version())
            .field(
                "files",
                &self.files.iter().map(|file| &file.path).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl PackageBuilder {
    /// Prepares a package of every file below `directory`, which must hold `plugin.toml`.
    ///
    /// Everything below the directory is packaged, hidden files included: stage exactly
    /// what should ship. Directories are implied by the files in them, so empty directories
    /// are not kept. Symbolic links and special files are refused, never followed. On Unix,
    /// a file with any execute bit is packaged as `0755`, others as `0644`; elsewhere every
    /// file is `0644`.
    pub fn from_dir(directory: &Path) -> Result<Self, PackageError> {
        let limits = PackageLimits::default();
        let mut files = Vec::new();
        let mut pending = vec![(directory.to_owned(), String::new())];
        while let Some((dir, relative_dir)) = pending.pop() {
            let source_error = |source| PackageError::Source {
                path: dir.clone(),
                source,
            };
            for entry in fs::read_dir(&dir).map_err(source_error)? {
                let entry = entry.map_err(source_error)?;
                let name = entry.file_name();
                let relative = match name.to_str() {
                    Some(name) if relative_dir.is_empty() => name.to_owned(),
                    Some(name) => format!("{relative_dir}/{name}"),
                    None => {
                        return Err(PackageError::NonUtf8Path {
                            path: format!("{relative_dir}/{}", name.to_string_lossy()),
                        });
                    }
                };
                let full = entry.path();
                // DirEntry::file_type does not follow symbolic links.
                let file_type = entry.file_type().map_err(|source| PackageError::Source {
                    path: full.clone(),
                    source,
                })?;
                if file_type.is_symlink() {
                    let target = fs::read_link(&full)
                        .map(|target| target.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    return Err(PackageError::Symlink {
                        path: relative,
                        target,
                    });
                }
                if file_type.is_dir() {
                    // No file below could pass the depth check; stop before walking it.
                    if relative.split('/').count() >= limits.max_path_depth {
                        return Err(path_error(
                            &relative,
                            PathProblem::TooDeep {
                                depth: relative.split('/').count() + 1,
                                limit: limits.max_path_depth,
                            },
                        ));
                    }
                    pending.push((full, relative));
                    continue;
                }
                if !file_type.is_file() {
                    return Err(PackageError::NotARegularFile { path: relative });
                }
                if files.len() >= limits.max_entries {
                    return Err(PackageError::TooManyEntries {
                        limit: limits.max_entries,
                    });
                }
                let metadata = entry.metadata().map_err(|source| PackageError::Source {
                    path: full.clone(),
                    source,
                })?;
                let executable = is_executable(&metadata);
                let (size, contents) = if relative == MANIFEST_FILE_NAME {
                    if metadata.len() > limits.max_manifest_size {
                        return Err(PackageError::ManifestTooLarge {
                            size: metadata.len(),
                            limit: limits.max_manifest_size,
                        });
                    }
                    let bytes = read_manifest_source(&full, &limits)?;
                    (bytes.len() as u64, SourceContents::Memory(bytes))
                } else {
                    (metadata.len(), SourceContents::Disk(full))
                };
                files.push(SourceFile {
                    path: relative,
                    size,
                    executable,
                    contents,
                });
            }
        }
        Self::from_sources(files, &limits)
    }

    /// Prepares a package from in-memory files (`path`, contents), all with mode `0644`.
    pub fn from_files<I, P, C>(files: I) -> Result<Self, PackageError>
    where
        I: IntoIterator<Item = (P, C)>,
        P: Into<String>,
        C: Into<Vec<u8>>,
    {
        Self::from_files_with_modes(
            files
                .into_iter()
                .map(|(path, contents)| (path, contents, false)),
        )
    }

    /// Prepares a package from in-memory files (`path`, contents, executable).
    pub fn from_files_with_modes<I, P, C>(files: I) -> Result<Self, PackageError>
    where
        I: IntoIterator<Item = (P, C, bool)>,
        P: Into<String>,
        C: Into<Vec<u8>>,
    {
        let files = files
            .into_iter()
            .map(|(path, contents, executable)| {
                let contents = contents.into();
                SourceFile {
                    path: path.into(),
                    size: contents.len() as u64,
                    executable,
                    contents: SourceContents::Memory(contents),
                }
            })
            .collect();
        Self::from_sources(files, &PackageLimits::default())
    }

    /// Sorts and checks the files exactly as the reader will.
    fn from_sources(
        mut files: Vec<SourceFile>,
        limits: &PackageLimits,
    ) -> Result<Self, PackageError> {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        if files.len() > limits.max_entries {
            return Err(PackageError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        let mut paths = PathIndex::default();
        let mut unpacked_size = 0u64;
        let mut manifest = None;
        let mut nested_manifest = None;
        for file in &files {
            check_package_path(&file.path, limits)
                .map_err(|problem| path_error(&file.path, problem))?;
            paths.insert(&file.path)?;
            split_ustar_path(&file.path).ok_or_else(|| PackageError::PathNotRepresentable {
                path: file.path.clone(),
            })?;
            unpacked_size = unpacked_size.saturating_add(file.size);
            if unpacked_size > limits.max_unpacked_size {
                return Err(PackageError::UnpackedSizeTooLarge {
                    path: file.path.clone(),
                    size: unpacked_size,
                    limit: limits.max_unpacked_size,
                });
            }
            if file.path == MANIFEST_FILE_NAME {
                if file.size > limits.max_manifest_size {
                    return Err(PackageError::ManifestTooLarge {
                        size: file.size,
                        limit: limits.max_manifest_size,
                    });
                }
                if let SourceContents::Memory(bytes) = &file.contents {
                    let text =
                        std::str::from_utf8(bytes).map_err(|_| PackageError::ManifestNotUtf8)?;
                    manifest = Some(Manifest::parse(text)?);
                }
            } else if nested_manifest.is_none()
                && file.path.rsplit('/').next() == Some(MANIFEST_FILE_NAME)
            {
                nested_manifest = Some(file.path.clone());
            }
        }
        let Some(manifest) = manifest else {
            return Err(match nested_manifest {
                Some(path) => PackageError::ManifestNotAtRoot { path },
                None => PackageError::MissingManifest,
            });
        };
        if files
            .binary_search_by(|file| file.path.as_str().cmp(manifest.entry()))
            .is_err()
        {
            return Err(PackageError::MissingEntryPoint {
                entry: manifest.entry().to_owned(),
            });
        }
        Ok(Self { files, manifest })
    }

    /// The package's validated manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Writes the package to `output`, streaming file contents, and returns its digest and
    /// length.
    pub fn write_to(&self, output: impl Write) -> Result<(PackageDigest, u64), PackageError> {
        let mut output = DigestingWriter::new(output);
        let mut chunk = vec![0u8; CHUNK_SIZE];
        for file in &self.files {
            let header = canonical_header(&file.path, file.size, file.executable)?;
            output.write_all(&header).map_err(PackageError::Write)?;
            match &file.contents {
                SourceContents::Memory(bytes) => {
                    output.write_all(bytes).map_err(PackageError::Write)?;
                }
                SourceContents::Disk(source) => {
                    copy_source_file(file, source, &mut output, &mut chunk)?;
                }
            }
            let padding = (BLOCK_SIZE - (file.size % BLOCK_SIZE as u64) as usize) % BLOCK_SIZE;
            output
                .write_all(&[0u8; BLOCK_SIZE][..padding])
                .map_err(PackageError::Write)?;
        }
        output
            .write_all(&[0u8; 2 * BLOCK_SIZE])
            .map_err(PackageError::Write)?;
        output.flush().map_err(PackageError::Write)?;
        Ok(output.finish())
    }

    /// Writes the package into memory.
    pub fn to_vec(&self) -> Result<Vec<u8>, PackageError> {
        let mut bytes = Vec::new();
        self.write_to(&mut bytes)?;
        Ok(bytes)
    }
}

/// Packages `directory` (see [`PackageBuilder::from_dir`]) into `output`, streaming file
/// contents, and returns the package's digest and length.
pub fn write_dir_package(
    directory: &Path,
    output: impl Write,
) -> Result<(PackageDigest, u64), PackageError> {
    PackageBuilder::from_dir(directory)?.write_to(output)
}

/// Packages `directory` (see [`PackageBuilder::from_dir`]) into memory.
pub fn build_dir_package(directory: &Path) -> Result<Vec<u8>, PackageError> {
    PackageBuilder::from_dir(directory)?.to_vec()
}

fn read_manifest_source(path: &Path, limits: &PackageLimits) -> Result<Vec<u8>, PackageError> {
    let source_error = |source| PackageError::Source {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    File::open(path)
        .map_err(source_error)?
        .take(limits.max_manifest_size + 1)
        .read_to_end(&mut bytes)
        .map_err(source_error)?;
    Ok(bytes)
}

#[cfg(unix)]
fn is_executable(metadata: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &fs::Metadata) -> bool {
    false
}

/// Copies exactly `file.size` bytes of `source`, refusing a file that changed size since it
/// was listed (the header already states the size).
fn copy_source_file(
    file: &SourceFile,
    source: &Path,
    output: &mut impl Write,
    chunk: &mut [u8],
) -> Result<(), PackageError> {
    let source_error = |error| PackageError::Source {
        path: source.to_owned(),
        source: error,
    };
    let changed = || PackageError::SourceChanged {
        path: file.path.clone(),
    };
    let mut input = File::open(source).map_err(source_error)?;
    let mut remaining = file.size;
    while remaining > 0 {
        let want = usize::try_from(remaining).map_or(chunk.len(), |r| r.min(chunk.len()));
        let read = match input.read(&mut chunk[..want]) {
            Ok(0) => return Err(changed()),
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(source_error(error)),
        };
        output
            .write_all(&chunk[..read])
            .map_err(PackageError::Write)?;
        remaining -= read as u64;
    }
    let mut probe = [0u8; 1];
    loop {
        match input.read(&mut probe) {
            Ok(0) => return Ok(()),
            Ok(_) => return Err(changed()),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(source_error(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(path: &str) -> Option<PathProblem> {
        check_package_path(path, &PackageLimits::default()).err()
    }

    #[test]
    fn ordinary_paths_are_accepted() {
        for path in [
            "plugin.toml",
            "a/b/c.txt",
            ".hidden",
            "dir/.config",
            "wéird ünïcode/日本.txt",
            "a..b",
            "con-tent.txt",
            "console.log",
            "com10",
            "nul_file",
            &"a".repeat(240),
        ] {
            assert_eq!(problem(path), None, "{path}");
        }
    }

    #[test]
    fn unsafe_paths_are_refused_precisely() {
        use PathProblem::*;
        let cases: &[(&str, PathProblem)] = &[
            ("", Empty),
            ("/etc/passwd", Absolute),
            ("//server/share", Absolute),
            ("C:/Windows", Absolute),
            ("c:relative", Absolute),
            ("..", ParentDirComponent),
            ("../x", ParentDirComponent),
            ("a/../../x", ParentDirComponent),
            ("a/..", ParentDirComponent),
            ("a\\b", Backslash),
            ("\\\\server\\share", Backslash),
            ("a\0b", ControlCharacter('\0')),
            ("a\nb", ControlCharacter('\n')),
            ("a\u{7f}", ControlCharacter('\u{7f}')),
            ("a\u{85}", ControlCharacter('\u{85}')),
            ("./a", NotCanonical),
            ("a/./b", NotCanonical),
            ("a//b", NotCanonical),
            ("a/", NotCanonical),
            (".", NotCanonical),
            ("a<b", WindowsInvalidCharacter('<')),
            ("a>b", WindowsInvalidCharacter('>')),
            ("a:b", Absolute),
            ("ab:c", WindowsInvalidCharacter(':')),
            ("file.txt:stream", WindowsInvalidCharacter(':')),
            ("a\"b", WindowsInvalidCharacter('"')),
            ("a|b", WindowsInvalidCharacter('|')),
            ("a?", WindowsInvalidCharacter('?')),
            ("dir/*", WindowsInvalidCharacter('*')),
            ("a.", TrailingDotOrSpace("a.".into())),
            ("a ", TrailingDotOrSpace("a ".into())),
            ("dir./x", TrailingDotOrSpace("dir.".into())),
            ("...", TrailingDotOrSpace("...".into())),
            ("CON", WindowsReservedName("CON".into())),
            ("con.txt", WindowsReservedName("con.txt".into())),
            ("dir/Nul.tar.gz", WindowsReservedName("Nul.tar.gz".into())),
            ("aux", WindowsReservedName("aux".into())),
            ("prn.x", WindowsReservedName("prn.x".into())),
            ("com1", WindowsReservedName("com1".into())),
            ("COM9.log", WindowsReservedName("COM9.log".into())),
            ("lpt5", WindowsReservedName("lpt5".into())),
            ("com¹.txt", WindowsReservedName("com¹.txt".into())),
            ("con .txt", WindowsReservedName("con .txt".into())),
            ("conout$", WindowsReservedName("conout$".into())),
            (
                &"a".repeat(241),
                TooLong {
                    length: 241,
                    limit: 240,
                },
            ),
            (
                &["d"; 33].join("/"),
                TooDeep {
                    depth: 33,
                    limit: 32,
                },
            ),
        ];
        for (path, expected) in cases {
            assert_eq!(problem(path).as_ref(), Some(expected), "{path:?}");
        }
        assert_eq!(problem(&["d"; 32].join("/")), None);
    }

    #[test]
    fn ustar_split_prefers_the_name_field_then_the_longest_prefix() {
        assert_eq!(split_ustar_path("a/b"), Some(("", "a/b")));
        let hundred = "x".repeat(100);
        assert_eq!(split_ustar_path(&hundred), Some(("", hundred.as_str())));
        assert_eq!(split_ustar_path(&"x".repeat(101)), None);
        let dir = "d".repeat(150);
        let path = format!("{dir}/e/f.txt");
        assert_eq!(split_ustar_path(&path), Some((&path[..152], "f.txt")));
        // The only '/' leaves a 156-byte prefix: no split fits.
        let path = format!("{}/f", "d".repeat(156));
        assert_eq!(split_ustar_path(&path), None);
        // A file name longer than 100 bytes never fits.
        let path = format!("d/{}", "f".repeat(101));
        assert_eq!(split_ustar_path(&path), None);
    }

    #[test]
    fn numeric_fields_parse_leniently_but_safely() {
        assert_eq!(parse_numeric(b"0000644\0"), Some(0o644));
        assert_eq!(parse_numeric(b"   644 \0"), Some(0o644));
        assert_eq!(parse_numeric(b"\0\0\0\0"), Some(0));
        assert_eq!(parse_numeric(b"0000000009\0"), None);
        assert_eq!(
            parse_numeric(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
            Some(256)
        );
        assert_eq!(parse_numeric(&[0xff; 12]), None);
        assert_eq!(
            parse_numeric(&[
                0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
            ]),
            None
        );
        assert_eq!(parse_numeric(b"77777777777777777777777"), None);
    }

    #[test]
    fn canonical_header_round_trips_through_the_checks() {
        let header = canonical_header("dir/file.bin", 1234, true).unwrap();
        assert_eq!(parse_numeric(&header[field::SIZE]), Some(1234));
        assert_eq!(parse_numeric(&header[field::MODE]), Some(0o755));
        assert_eq!(
            parse_numeric(&header[field::CHECKSUM]),
            Some(header_checksum(&header))
        );
        assert_eq!(&header[field::CHECKSUM][6..], b"\0 ");
        assert_eq!(lossy_header_path(&header), "dir/file.bin");
    }

    #[test]
    fn errors_can_cross_threads() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<PackageError>();
        assert_send_sync::<ManifestError>();
    }

    #[test]
    fn path_index_finds_collisions() {
        let mut index = PathIndex::default();
        index.insert("Dir/File.txt").unwrap();
        index.insert("dir/other.txt").unwrap();
        assert!(matches!(
            index.insert("Dir/File.txt"),
            Err(PackageError::DuplicatePath { .. })
        ));
        assert!(matches!(
            index.insert("DIR/FILE.TXT"),
            Err(PackageError::CaseCollision { existing, .. }) if existing == "Dir/File.txt"
        ));
        assert!(matches!(
            index.insert("dir"),
            Err(PackageError::FileDirectoryConflict { .. })
        ));
        index.insert("x").unwrap();
        assert!(matches!(
            index.insert("X/y"),
            Err(PackageError::FileDirectoryConflict { existing, .. }) if existing == "x"
        ));
        // Unicode case folding, not just ASCII.
        index.insert("Ärger").unwrap();
        assert!(matches!(
            index.insert("ärger"),
            Err(PackageError::CaseCollision { .. })
        ));
        // Pairs that lowercasing alone keeps apart but a file system joins: a final sigma
        // (Windows uppercases both to `Σ`), the Kelvin sign (macOS folds it to `k`), and the
        // two normal forms of `é` (macOS compares names in normal form).
        for (first, second) in [
            ("aΣ", "aσ"),
            ("\u{212a}elvin", "kelvin"),
            ("caf\u{e9}", "cafe\u{301}"),
        ] {
            let mut index = PathIndex::default();
            index.insert(first).unwrap();
            let joined = index.insert(second);
            assert!(
                matches!(joined, Err(PackageError::CaseCollision { .. })),
                "{first:?} and {second:?}: {joined:?}"
            );
        }
        // Different directories under one key are one directory: no conflict there, but
        // the same file name below them is.
        let mut index = PathIndex::default();
        index.insert("dir\u{e9}/a").unwrap();
        index.insert("DIRE\u{301}/b").unwrap();
        assert!(matches!(
            index.insert("DIRE\u{301}/A"),
            Err(PackageError::CaseCollision { .. })
        ));
    }
}
