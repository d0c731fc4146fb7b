//! Where plugin targets live in the repository, and which hash bin is responsible for them.
//!
//! ```text
//! plugins/{shard}/{publisher}/{name}/{version}/package.tar
//! plugins/{shard}/{publisher}/{name}/{version}/patches/from-{base sha256}.patch
//! ```
//!
//! `shard` is the first [`SHARD_HEX_DIGITS`] hex digits of `sha256("{publisher}/{name}")`.
//! It depends on the plugin only, so every version and patch of one plugin lands in the same
//! bin: a client that reads that bin learns, from signed metadata, every version of the plugin
//! (a server cannot hide the newest one). The bin is named by the first [`BIN_HEX_DIGITS`] of
//! the shard (`bin-3f2` for shard `3f2a`).

use std::fmt;
use std::str::FromStr;

use plugstore_format::digest::PackageDigest;
use plugstore_format::manifest::{PluginId, PluginIdError};
use semver::Version;

use crate::digest::Sha256;

/// Hex digits of the shard written into every target path. Four, one more than the bins use
/// today, so that splitting into 65,536 bins later renames no target (ADR 0004).
pub const SHARD_HEX_DIGITS: usize = 4;

/// Hex digits of the shard that select a bin.
pub const BIN_HEX_DIGITS: usize = 3;

/// Number of delegated bins (`bin-000` … `bin-fff`). 4096 keeps one bin near 190 KiB and the
/// snapshot near 190 KiB at 100k plugins (ADR 0004's size table): a host with 20 plugins
/// fetches about 1.2 MB compressed on first use, and a refresh touches only changed bins.
pub const BIN_COUNT: usize = 1 << (4 * BIN_HEX_DIGITS);

/// First path component of every plugin target.
const PLUGINS_DIR: &str = "plugins";
/// File name of a full package target.
const PACKAGE_FILE: &str = "package.tar";
/// Directory of a version's delta patches.
const PATCHES_DIR: &str = "patches";
const PATCH_PREFIX: &str = "from-";
const PATCH_SUFFIX: &str = ".patch";

/// The first [`SHARD_HEX_DIGITS`] hex digits of `sha256("{publisher}/{name}")`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard(u16);

impl Shard {
    /// The shard of a plugin.
    pub fn of(plugin: &PluginId) -> Self {
        let digest = Sha256::of(plugin.to_string().as_bytes());
        let bytes = digest.as_bytes();
        Self(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    /// The bin responsible for this shard.
    pub fn bin(self) -> BinName {
        BinName(self.0 >> (4 * (SHARD_HEX_DIGITS - BIN_HEX_DIGITS)))
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:0width$x}", self.0, width = SHARD_HEX_DIGITS)
    }
}

/// The name of one delegated targets role, `bin-000` … `bin-fff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BinName(u16);

impl BinName {
    /// Every bin, in order.
    pub fn all() -> impl Iterator<Item = BinName> {
        (0..BIN_COUNT).map(|index| BinName(index as u16))
    }

    /// The bin at `index` (`0..BIN_COUNT`).
    pub fn from_index(index: usize) -> Option<Self> {
        (index < BIN_COUNT).then_some(BinName(index as u16))
    }

    /// Its position in [`BinName::all`].
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The key of this bin in the snapshot's `meta` (`bin-3f2.json`).
    pub fn meta_key(self) -> String {
        format!("{self}.json")
    }

    /// The glob patterns the top-level targets role delegates to this bin.
    ///
    /// Every pattern has a fixed depth, so tough's globs (where `*` also matches `/`) and
    /// python-tuf's per-component matching accept exactly the same paths.
    pub fn path_patterns(self) -> Vec<String> {
        let prefix = format!("{:0width$x}", self.0, width = BIN_HEX_DIGITS);
        let any_digit = "?".repeat(SHARD_HEX_DIGITS - BIN_HEX_DIGITS);
        vec![
            format!("{PLUGINS_DIR}/{prefix}{any_digit}/*/*/*/{PACKAGE_FILE}"),
            format!("{PLUGINS_DIR}/{prefix}{any_digit}/*/*/*/{PATCHES_DIR}/*"),
        ]
    }
}

impl fmt::Display for BinName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bin-{:0width$x}", self.0, width = BIN_HEX_DIGITS)
    }
}

/// A role name that is not `bin-` followed by [`BIN_HEX_DIGITS`] lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a bin name (`bin-` and {BIN_HEX_DIGITS} lowercase hex digits)")]
pub struct BinNameError(pub String);

impl FromStr for BinName {
    type Err = BinNameError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refuse = || BinNameError(text.to_owned());
        let digits = text.strip_prefix("bin-").ok_or_else(refuse)?;
        if digits.len() != BIN_HEX_DIGITS || !digits.bytes().all(is_lower_hex) {
            return Err(refuse());
        }
        u16::from_str_radix(digits, 16)
            .map(BinName)
            .map_err(|_| refuse())
    }
}

/// What a target path points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetFile {
    /// The full package (`package.tar`).
    Package,
    /// A delta patch that turns the package with digest `base` into this version.
    Patch {
        /// The digest of the installed package the patch applies to.
        base: PackageDigest,
    },
}

/// A parsed, well-formed plugin target path.
///
/// Built from its parts, or parsed with [`FromStr`], which refuses anything that
/// [`Display`](fmt::Display) would not write back byte for byte: a wrong shard, an invalid
/// plugin id, a version that is not canonical semver, an unknown file name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TargetPath {
    plugin: PluginId,
    version: Version,
    file: TargetFile,
}

impl TargetPath {
    /// The path of the full package of `plugin` at `version`.
    pub fn package(plugin: PluginId, version: Version) -> Self {
        Self {
            plugin,
            version,
            file: TargetFile::Package,
        }
    }

    /// The path of the patch that turns the package `base` into `plugin` at `version`.
    pub fn patch(plugin: PluginId, version: Version, base: PackageDigest) -> Self {
        Self {
            plugin,
            version,
            file: TargetFile::Patch { base },
        }
    }

    /// The plugin the target belongs to.
    pub fn plugin(&self) -> &PluginId {
        &self.plugin
    }

    /// The version the target installs.
    pub fn version(&self) -> &Version {
        &self.version
    }

    /// Package or patch.
    pub fn file(&self) -> TargetFile {
        self.file
    }

    /// The shard written into the path.
    pub fn shard(&self) -> Shard {
        Shard::of(&self.plugin)
    }

    /// The bin responsible for this path.
    pub fn bin(&self) -> BinName {
        self.shard().bin()
    }
}

impl fmt::Display for TargetPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PLUGINS_DIR}/{shard}/{publisher}/{name}/{version}/",
            shard = self.shard(),
            publisher = self.plugin.publisher(),
            name = self.plugin.name(),
            version = self.version,
        )?;
        match self.file {
            TargetFile::Package => f.write_str(PACKAGE_FILE),
            TargetFile::Patch { base } => write!(
                f,
                "{PATCHES_DIR}/{PATCH_PREFIX}{}{PATCH_SUFFIX}",
                base.to_hex()
            ),
        }
    }
}

/// Why a string is not a plugin target path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetPathError {
    /// Not `plugins/{shard}/{publisher}/{name}/{version}/package.tar` or
    /// `…/{version}/patches/from-{sha256}.patch`.
    #[error(
        "`{0}` is not a plugin target path (plugins/{{shard}}/{{publisher}}/{{name}}/{{version}}/package.tar or …/patches/from-{{sha256}}.patch)"
    )]
    Shape(String),
    /// The publisher or name breaks the id rules.
    #[error("`{path}`: {source}")]
    PluginId {
        /// The refused path.
        path: String,
        /// What is wrong with the id.
        source: PluginIdError,
    },
    /// The version is not semver, or not written the canonical way.
    #[error("`{path}`: `{version}` is not a canonical semver version")]
    Version {
        /// The refused path.
        path: String,
        /// The version component.
        version: String,
    },
    /// The shard is not the one of the plugin id, so the path sits in another plugin's bin.
    #[error("`{path}`: the shard of {plugin} is {expected}, not `{found}`")]
    WrongShard {
        /// The refused path.
        path: String,
        /// The plugin the path names.
        plugin: PluginId,
        /// The shard it must have.
        expected: Shard,
        /// The shard component found.
        found: String,
    },
}

impl FromStr for TargetPath {
    type Err = TargetPathError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let shape = || TargetPathError::Shape(text.to_owned());
        let parts: Vec<&str> = text.split('/').collect();
        let (shard, publisher, name, version, rest) = match parts.as_slice() {
            [dir, shard, publisher, name, version, rest @ ..] if *dir == PLUGINS_DIR => {
                (*shard, *publisher, *name, *version, rest)
            }
            _ => return Err(shape()),
        };
        let file = match rest {
            [file] if *file == PACKAGE_FILE => TargetFile::Package,
            [dir, file] if *dir == PATCHES_DIR => {
                let hex = file
                    .strip_prefix(PATCH_PREFIX)
                    .and_then(|file| file.strip_suffix(PATCH_SUFFIX))
                    .ok_or_else(shape)?;
                let base: Sha256 = hex.parse().map_err(|_| shape())?;
                TargetFile::Patch { base: base.into() }
            }
            _ => return Err(shape()),
        };
        let plugin =
            PluginId::new(publisher, name).map_err(|source| TargetPathError::PluginId {
                path: text.to_owned(),
                source,
            })?;
        let parsed_version = Version::parse(version)
            .ok()
            .filter(|parsed| parsed.to_string() == version)
            .ok_or_else(|| TargetPathError::Version {
                path: text.to_owned(),
                version: version.to_owned(),
            })?;
        let expected = Shard::of(&plugin);
        if shard != expected.to_string() {
            return Err(TargetPathError::WrongShard {
                path: text.to_owned(),
                plugin,
                expected,
                found: shard.to_owned(),
            });
        }
        Ok(Self {
            plugin,
            version: parsed_version,
            file,
        })
    }
}

/// Whether the target path `path` matches the delegation pattern `pattern`, component by
/// component.
///
/// `*` matches any run of characters and `?` one character, never across `/`: this is
/// python-tuf's (fnmatch per component) reading, and the stricter one. A pattern we cannot
/// read that way (any other special character) is taken literally, so it can only match less.
pub fn path_matches_pattern(path: &str, pattern: &str) -> bool {
    let path_parts: Vec<&str> = path.split('/').collect();
    let pattern_parts: Vec<&str> = pattern.split('/').collect();
    path_parts.len() == pattern_parts.len()
        && path_parts
            .iter()
            .zip(&pattern_parts)
            .all(|(part, pattern)| component_matches(part.as_bytes(), pattern.as_bytes()))
}

/// Wildcard matching that backtracks only to the last `*`: linear in practice and at worst
/// `O(text × pattern)`, so a pattern full of stars in signed metadata cannot stall a client.
fn component_matches(text: &[u8], pattern: &[u8]) -> bool {
    let (mut t, mut p) = (0, 0);
    // Where to resume after the last `*`: the pattern just past it, and the text position it
    // currently swallows up to.
    let mut resume: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                resume = Some((p + 1, t));
                p += 1;
            }
            Some(&expected) if expected == b'?' || expected == text[t] => {
                t += 1;
                p += 1;
            }
            _ => match resume {
                Some((after_star, swallowed)) => {
                    resume = Some((after_star, swallowed + 1));
                    p = after_star;
                    t = swallowed + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&byte| byte == b'*')
}

fn is_lower_hex(byte: u8) -> bool {
    byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widget() -> PluginId {
        "acme/widget".parse().unwrap()
    }

    #[test]
    fn shard_is_four_digits_and_the_bin_its_first_three() {
        let shard = Shard::of(&widget());
        let expected = &Sha256::of(b"acme/widget").to_hex()[..4];
        assert_eq!(shard.to_string(), expected);
        assert_eq!(shard.bin().to_string(), format!("bin-{}", &expected[..3]));
    }

    #[test]
    fn paths_round_trip() {
        let base = PackageDigest::of(b"old");
        for path in [
            TargetPath::package(widget(), Version::new(1, 4, 2)),
            TargetPath::patch(widget(), "2.0.0-rc.1+build.5".parse().unwrap(), base),
        ] {
            let text = path.to_string();
            assert_eq!(text.parse::<TargetPath>(), Ok(path));
        }
    }

    #[test]
    fn refuses_paths_it_would_not_write() {
        let good = TargetPath::package(widget(), Version::new(1, 0, 0)).to_string();
        let shard = Shard::of(&widget()).to_string();
        for bad in [
            good.replace("package.tar", "package.zip"),
            good.replace("1.0.0", "1.0"),
            good.replace("1.0.0", "01.0.0"),
            good.replace(&shard, "0000"),
            good.replace("acme", "Acme"),
            format!("{good}/x"),
            good.replace("plugins/", "/plugins/"),
            good.replace("/package.tar", "/../package.tar"),
            good.replace("package.tar", "patches/from-abc.patch"),
        ] {
            assert!(bad.parse::<TargetPath>().is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn bins_cover_exactly_their_shards() {
        let path = TargetPath::package(widget(), Version::new(1, 0, 0));
        let patch = TargetPath::patch(widget(), Version::new(1, 0, 0), PackageDigest::of(b"x"));
        let own = path.bin().path_patterns();
        let other = BinName::from_index((path.bin().index() + 1) % BIN_COUNT)
            .unwrap()
            .path_patterns();
        for target in [path.to_string(), patch.to_string()] {
            assert!(own.iter().any(|p| path_matches_pattern(&target, p)));
            assert!(!other.iter().any(|p| path_matches_pattern(&target, p)));
        }
        // Fixed depth: `*` never swallows a `/`.
        let deeper = path.to_string().replace("package.tar", "x/package.tar");
        assert!(!own.iter().any(|p| path_matches_pattern(&deeper, p)));
    }

    #[test]
    fn wildcards_match_within_one_component() {
        for (text, pattern, expected) in [
            ("package.tar", "*", true),
            ("package.tar", "*.tar", true),
            ("package.tar", "p?ckage.tar", true),
            ("package.tar", "*.zip", false),
            ("", "*", true),
            ("", "?", false),
            ("abcabd", "*abd", true),
            ("3f2a", "3f2?", true),
            ("3f2ab", "3f2?", false),
        ] {
            assert_eq!(
                component_matches(text.as_bytes(), pattern.as_bytes()),
                expected,
                "{text} ~ {pattern}"
            );
        }
        // A hostile pattern of many stars finishes at once instead of backtracking forever.
        let text = "a".repeat(200);
        let pattern = format!("{}b", "*a".repeat(60));
        assert!(!component_matches(text.as_bytes(), pattern.as_bytes()));
    }

    #[test]
    fn bin_names_parse_and_enumerate() {
        assert_eq!(BinName::all().count(), 4096);
        assert_eq!(BinName::all().last().unwrap().to_string(), "bin-fff");
        assert_eq!("bin-3f2".parse::<BinName>().unwrap().index(), 0x3f2);
        for bad in ["bin-3F2", "bin-3f", "bin-3f20", "targets", "bin-+12"] {
            assert!(bad.parse::<BinName>().is_err(), "{bad}");
        }
    }
}
