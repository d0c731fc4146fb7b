//! `plugin.toml`, the manifest at the root of every package.
//!
//! [`Manifest::parse`] is the only way to obtain a [`Manifest`]: it checks every field and
//! refuses anything it does not know, naming the field in the error, so the rest of the
//! system handles only validated values. Tools that need to keep their own data in the
//! manifest put it under the free-form `[metadata]` table, which is carried but never
//! interpreted.
//!
//! ```toml
//! format = 1
//!
//! [plugin]
//! id = "acme/widget"
//! version = "1.2.3"
//! kind = "wasm"
//! entry = "plugin.wasm"
//! targets = ["any"]
//! description = "Adds widgets"
//! license = "MIT"
//! homepage = "https://acme.example/widget"
//! capabilities = ["fs.read", "net.http"]
//!
//! [host]
//! compatibility = ">=1.4, <2"
//!
//! [dependencies]
//! "acme/other" = "^1.2"
//!
//! [metadata]
//! anything = "tools like"
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use semver::{Version, VersionReq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use toml::{Table, Value};

use crate::limits::{MAX_MANIFEST_SIZE, PackageLimits};
use crate::package::{PathProblem, check_package_path};

/// File name of the manifest; it sits at the root of every package.
pub const MANIFEST_FILE_NAME: &str = "plugin.toml";

/// The manifest format version this crate reads and writes (`format = 1`).
pub const MANIFEST_FORMAT: i64 = 1;

/// Shortest publisher or plugin name.
pub const MIN_ID_PART_LEN: usize = 2;

/// Longest publisher or plugin name (as on GitHub, so names can mirror organisations).
pub const MAX_ID_PART_LEN: usize = 39;

/// Longest `plugin.description`, in characters: one line in a search result.
pub const MAX_DESCRIPTION_CHARS: usize = 300;

/// Longest `plugin.license` expression, in characters.
pub const MAX_LICENSE_CHARS: usize = 100;

/// Longest `plugin.homepage`, in bytes (the de facto URL limit of browsers and CDNs).
pub const MAX_HOMEPAGE_LEN: usize = 2048;

/// Keys allowed at the top level.
const TOP_LEVEL_KEYS: &[&str] = &["format", "plugin", "host", "dependencies", "metadata"];
/// Keys allowed in `[plugin]`.
const PLUGIN_KEYS: &[&str] = &[
    "id",
    "version",
    "kind",
    "entry",
    "targets",
    "description",
    "license",
    "homepage",
    "capabilities",
];
/// Keys allowed in `[host]`.
const HOST_KEYS: &[&str] = &["compatibility"];

// ---------------------------------------------------------------------------------------------
// Plugin ids
// ---------------------------------------------------------------------------------------------

/// Why a publisher or plugin name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdPartError {
    /// Too short or too long.
    #[error("must be {MIN_ID_PART_LEN}-{MAX_ID_PART_LEN} characters long, not {0}")]
    Length(usize),
    /// Starts with a digit or a hyphen.
    #[error("must start with a lowercase ASCII letter")]
    NotStartingWithLetter,
    /// Contains an uppercase letter, an underscore, a dot, a non-ASCII character…
    #[error("contains {0:?}; only lowercase ASCII letters, digits and single hyphens are allowed")]
    InvalidCharacter(char),
    /// Contains `--`.
    #[error("must not contain two hyphens in a row")]
    DoubleHyphen,
    /// Ends with `-`.
    #[error("must not end with a hyphen")]
    TrailingHyphen,
}

/// Checks a publisher or plugin name: 2-39 lowercase ASCII letters, digits and single
/// hyphens, starting with a letter and not ending with a hyphen.
///
/// These names appear in URLs, file names on every operating system and plugin ids, so they
/// are kept to characters that mean the same thing everywhere.
pub fn check_id_part(part: &str) -> Result<(), IdPartError> {
    // One pass over the bytes for the usual, valid part (update checks read 100 per request);
    // the checks below find what is wrong with any other.
    if is_plain_id_part(part.as_bytes()) {
        return Ok(());
    }
    id_part_problem(part)
}

/// The first rule `part` breaks, in the order the rules are documented.
fn id_part_problem(part: &str) -> Result<(), IdPartError> {
    let length = part.chars().count();
    if !(MIN_ID_PART_LEN..=MAX_ID_PART_LEN).contains(&length) {
        return Err(IdPartError::Length(length));
    }
    if !part.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(IdPartError::NotStartingWithLetter);
    }
    if let Some(bad) = part
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        return Err(IdPartError::InvalidCharacter(bad));
    }
    if part.contains("--") {
        return Err(IdPartError::DoubleHyphen);
    }
    if part.ends_with('-') {
        return Err(IdPartError::TrailingHyphen);
    }
    Ok(())
}

/// A valid id part, in one pass: ASCII, so its length in bytes is its length in characters.
fn is_plain_id_part(part: &[u8]) -> bool {
    let (Some(first), Some(last)) = (part.first(), part.last()) else {
        return false;
    };
    let mut previous_hyphen = false;
    (MIN_ID_PART_LEN..=MAX_ID_PART_LEN).contains(&part.len())
        && first.is_ascii_lowercase()
        && *last != b'-'
        && part.iter().all(|&byte| {
            let hyphen = byte == b'-';
            let ok =
                byte.is_ascii_lowercase() || byte.is_ascii_digit() || (hyphen && !previous_hyphen);
            previous_hyphen = hyphen;
            ok
        })
}

/// Why a plugin id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginIdError {
    /// Not of the form `publisher/name`.
    #[error("`{0}` is not a plugin id; expected `publisher/name`")]
    NotPublisherSlashName(String),
    /// The publisher part breaks the naming rules.
    #[error("publisher `{publisher}` {problem}")]
    Publisher {
        /// The refused publisher part.
        publisher: String,
        /// What is wrong with it.
        problem: IdPartError,
    },
    /// The name part breaks the naming rules.
    #[error("plugin name `{name}` {problem}")]
    Name {
        /// The refused name part.
        name: String,
        /// What is wrong with it.
        problem: IdPartError,
    },
}

/// A plugin's identity across versions: `publisher/name`, both parts following
/// [`check_id_part`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PluginId {
    publisher: String,
    name: String,
}

impl PluginId {
    /// Builds an id from its two parts, checking both.
    pub fn new(publisher: &str, name: &str) -> Result<Self, PluginIdError> {
        check_id_part(publisher).map_err(|problem| PluginIdError::Publisher {
            publisher: publisher.to_owned(),
            problem,
        })?;
        check_id_part(name).map_err(|problem| PluginIdError::Name {
            name: name.to_owned(),
            problem,
        })?;
        Ok(Self {
            publisher: publisher.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The publisher namespace that owns the plugin.
    pub fn publisher(&self) -> &str {
        &self.publisher
    }

    /// The plugin's name within its publisher.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl FromStr for PluginId {
    type Err = PluginIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (publisher, name) = text
            .split_once('/')
            .ok_or_else(|| PluginIdError::NotPublisherSlashName(text.to_owned()))?;
        Self::new(publisher, name)
    }
}

impl fmt::Display for PluginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.publisher, self.name)
    }
}

impl fmt::Debug for PluginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PluginId({self})")
    }
}

impl Serialize for PluginId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PluginId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------------
// Kinds, targets, capabilities, host compatibility
// ---------------------------------------------------------------------------------------------

/// How a plugin's entry point is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    /// A WebAssembly module, run in the host's sandbox on any platform.
    Wasm,
    /// A platform binary (shared library or executable), built per target.
    Native,
}

impl PluginKind {
    /// The manifest spelling (`wasm`, `native`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Wasm => "wasm",
            Self::Native => "native",
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `plugin.kind` value that is neither `wasm` nor `native`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown plugin kind `{0}`; expected `wasm` or `native`")]
pub struct UnknownPluginKind(pub String);

impl FromStr for PluginKind {
    type Err = UnknownPluginKind;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "wasm" => Ok(Self::Wasm),
            "native" => Ok(Self::Native),
            other => Err(UnknownPluginKind(other.to_owned())),
        }
    }
}

/// A platform a plugin runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// Every platform: the only target of a wasm plugin.
    Any,
    /// Windows on x86-64.
    WindowsX86_64,
    /// Windows on ARM64.
    WindowsAarch64,
    /// Linux on x86-64.
    LinuxX86_64,
    /// Linux on ARM64.
    LinuxAarch64,
    /// macOS on Intel.
    MacosX86_64,
    /// macOS on Apple silicon.
    MacosAarch64,
}

impl Target {
    /// Every target, in the order they are documented.
    pub const ALL: [Target; 7] = [
        Self::Any,
        Self::WindowsX86_64,
        Self::WindowsAarch64,
        Self::LinuxX86_64,
        Self::LinuxAarch64,
        Self::MacosX86_64,
        Self::MacosAarch64,
    ];

    /// The manifest spelling, `<os>-<arch>` or `any`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::WindowsX86_64 => "windows-x86_64",
            Self::WindowsAarch64 => "windows-aarch64",
            Self::LinuxX86_64 => "linux-x86_64",
            Self::LinuxAarch64 => "linux-aarch64",
            Self::MacosX86_64 => "macos-x86_64",
            Self::MacosAarch64 => "macos-aarch64",
        }
    }

    /// The platform this code was compiled for, if it is one plugins can target.
    pub fn current() -> Option<Self> {
        let os = std::env::consts::OS;
        let arch = std::env::consts::ARCH;
        Self::ALL
            .into_iter()
            .filter(|target| *target != Self::Any)
            .find(|target| target.as_str() == format!("{os}-{arch}"))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A target string that is not one of [`Target::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown target `{0}`; known targets: {known}", known = known_targets())]
pub struct UnknownTarget(pub String);

fn known_targets() -> String {
    Target::ALL.map(Target::as_str).join(", ")
}

impl FromStr for Target {
    type Err = UnknownTarget;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|target| target.as_str() == text)
            .ok_or_else(|| UnknownTarget(text.to_owned()))
    }
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Something a plugin asks the host to allow; the sandbox grants nothing that is not listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// `log`: write to the host's log.
    Log,
    /// `fs.read`: read files the host exposes.
    FsRead,
    /// `fs.write`: write files the host exposes.
    FsWrite,
    /// `net.http`: make HTTP(S) requests.
    NetHttp,
    /// `net.socket`: open raw TCP/UDP sockets.
    NetSocket,
    /// `clipboard`: read and write the clipboard.
    Clipboard,
    /// `process.spawn`: start other programs.
    ProcessSpawn,
    /// `env.read`: read environment variables.
    EnvRead,
    /// `ui.dialog`: show dialogs to the user.
    UiDialog,
}

/// Every capability a manifest may request; anything else is refused.
pub const KNOWN_CAPABILITIES: &[Capability] = &[
    Capability::Log,
    Capability::FsRead,
    Capability::FsWrite,
    Capability::NetHttp,
    Capability::NetSocket,
    Capability::Clipboard,
    Capability::ProcessSpawn,
    Capability::EnvRead,
    Capability::UiDialog,
];

impl Capability {
    /// The manifest spelling: a dotted lowercase identifier such as `fs.read`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::FsRead => "fs.read",
            Self::FsWrite => "fs.write",
            Self::NetHttp => "net.http",
            Self::NetSocket => "net.socket",
            Self::Clipboard => "clipboard",
            Self::ProcessSpawn => "process.spawn",
            Self::EnvRead => "env.read",
            Self::UiDialog => "ui.dialog",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a capability string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    /// Not of the form `word` or `word.word` with lowercase ASCII words.
    #[error("`{0}` is not a capability name (dotted lowercase identifiers such as `fs.read`)")]
    Malformed(String),
    /// Well formed, but this version of plugstore does not know it.
    #[error("unknown capability `{0}`; known capabilities: {known}", known = known_capabilities())]
    Unknown(String),
}

fn known_capabilities() -> String {
    KNOWN_CAPABILITIES
        .iter()
        .map(|capability| capability.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_dotted_identifier(text: &str) -> bool {
    !text.is_empty()
        && text.split('.').all(|word| {
            word.starts_with(|c: char| c.is_ascii_lowercase())
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

impl FromStr for Capability {
    type Err = CapabilityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if !is_dotted_identifier(text) {
            return Err(CapabilityError::Malformed(text.to_owned()));
        }
        KNOWN_CAPABILITIES
            .iter()
            .copied()
            .find(|capability| capability.as_str() == text)
            .ok_or_else(|| CapabilityError::Unknown(text.to_owned()))
    }
}

impl Serialize for Capability {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The host application versions a plugin works with (`[host] compatibility`).
///
/// Matching follows semver: a pre-release host version only matches a requirement that
/// names a pre-release of the same `MAJOR.MINOR.PATCH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostCompatibility(pub VersionReq);

impl HostCompatibility {
    /// Whether a host application of version `host` may load the plugin.
    pub fn allows(&self, host: &Version) -> bool {
        self.0.matches(host)
    }

    /// The semver requirement.
    pub fn requirement(&self) -> &VersionReq {
        &self.0
    }
}

impl FromStr for HostCompatibility {
    type Err = semver::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        VersionReq::parse(text).map(Self)
    }
}

impl fmt::Display for HostCompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for HostCompatibility {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for HostCompatibility {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        VersionReq::deserialize(deserializer).map(Self)
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why a manifest was refused. Every variant names the offending field (as `section.key`).
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The text is larger than [`MAX_MANIFEST_SIZE`].
    #[error("plugin.toml is {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        /// Size of the text in bytes.
        size: usize,
        /// The limit in bytes.
        limit: u64,
    },
    /// Not valid TOML.
    #[error("plugin.toml is not valid TOML: {0}")]
    Syntax(toml::de::Error),
    /// `format` is not the version this crate understands.
    #[error(
        "format: `{found}` is not a manifest format this version of plugstore reads (expected `format = {MANIFEST_FORMAT}`)"
    )]
    UnsupportedFormat {
        /// The value found, as written.
        found: String,
    },
    /// A required field is absent.
    #[error("{field}: required field is missing")]
    MissingField {
        /// The field, e.g. `plugin.version`.
        field: String,
    },
    /// A field this format does not define.
    #[error("unknown field `{key}` in {section}; if this is tool data, put it under [metadata]")]
    UnknownField {
        /// Where it was found: `[plugin]`, `[host]` or `the top level`.
        section: String,
        /// The unknown key.
        key: String,
    },
    /// A field has the wrong TOML type.
    #[error("{field}: expected {expected}, found {found}")]
    WrongType {
        /// The field, e.g. `plugin.targets`.
        field: String,
        /// What the format requires (`a string`, `an array of strings`, …).
        expected: &'static str,
        /// The TOML type found.
        found: &'static str,
    },
    /// `plugin.id` or a dependency key is not a valid plugin id.
    #[error("{field}: {source}")]
    InvalidId {
        /// `plugin.id` or `dependencies`.
        field: String,
        /// What is wrong with it.
        source: PluginIdError,
    },
    /// `plugin.version` is not a semver version.
    #[error(
        "plugin.version: `{value}` is not a semver version (expected MAJOR.MINOR.PATCH): {source}"
    )]
    InvalidVersion {
        /// The refused text.
        value: String,
        /// The semver parser's explanation.
        source: semver::Error,
    },
    /// `host.compatibility` or a dependency requirement is not a semver requirement.
    #[error(
        "{field}: `{value}` is not a semver version requirement (such as `>=1.4, <2` or `^1.2`): {source}"
    )]
    InvalidVersionReq {
        /// `host.compatibility` or `dependencies."publisher/name"`.
        field: String,
        /// The refused text.
        value: String,
        /// The semver parser's explanation.
        source: semver::Error,
    },
    /// `plugin.kind` is neither `wasm` nor `native`.
    #[error("plugin.kind: {0}")]
    InvalidKind(UnknownPluginKind),
    /// `plugin.entry` is not a path a package can hold.
    #[error("plugin.entry: `{value}` {problem}")]
    InvalidEntry {
        /// The refused path.
        value: String,
        /// What is wrong with it.
        problem: PathProblem,
    },
    /// `plugin.entry` names the manifest itself.
    #[error("plugin.entry: the entry point cannot be {MANIFEST_FILE_NAME}")]
    EntryIsManifest,
    /// `plugin.targets` contains an unknown target.
    #[error("plugin.targets: {0}")]
    UnknownTarget(UnknownTarget),
    /// `plugin.targets` is empty.
    #[error("plugin.targets: must list at least one target")]
    NoTargets,
    /// `plugin.targets` lists a target twice.
    #[error("plugin.targets: `{0}` is listed twice")]
    DuplicateTarget(Target),
    /// A wasm plugin's targets are not exactly `["any"]`.
    #[error(
        "plugin.targets: a wasm plugin runs on every platform, so its targets must be exactly [\"any\"]"
    )]
    WasmTargetsNotAny,
    /// A native plugin lists `any`.
    #[error(
        "plugin.targets: a native binary runs only on the platforms it was built for; list them (`any` is for wasm plugins)"
    )]
    NativeTargetAny,
    /// `plugin.description` is empty, too long or contains control characters.
    #[error("plugin.description: {reason}")]
    InvalidDescription {
        /// What is wrong with it.
        reason: String,
    },
    /// `plugin.license` is not an SPDX-style expression.
    #[error(
        "plugin.license: `{0}` is not an SPDX license expression (such as `MIT` or `Apache-2.0 OR MIT`)"
    )]
    InvalidLicense(String),
    /// `plugin.homepage` is not an `https://` URL.
    #[error("plugin.homepage: `{0}` is not an https:// URL")]
    InvalidHomepage(String),
    /// `plugin.capabilities` contains something that is not a known capability.
    #[error("plugin.capabilities: {0}")]
    InvalidCapability(CapabilityError),
    /// `plugin.capabilities` lists a capability twice.
    #[error("plugin.capabilities: `{0}` is listed twice")]
    DuplicateCapability(Capability),
    /// The plugin lists itself as a dependency.
    #[error("dependencies: `{0}` cannot depend on itself")]
    SelfDependency(PluginId),
    /// [`Manifest::to_toml`] could not serialize tool metadata.
    #[error("cannot write plugin.toml: {0}")]
    Serialize(String),
}

// ---------------------------------------------------------------------------------------------
// The manifest
// ---------------------------------------------------------------------------------------------

/// A validated `plugin.toml`.
///
/// Only [`Manifest::parse`] (or deserializing, which runs the same checks) creates one, so
/// every value reachable from it has passed the format's rules.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    id: PluginId,
    version: Version,
    kind: PluginKind,
    entry: String,
    targets: Vec<Target>,
    description: String,
    license: Option<String>,
    homepage: Option<String>,
    capabilities: Vec<Capability>,
    host_compatibility: HostCompatibility,
    dependencies: BTreeMap<PluginId, VersionReq>,
    metadata: Table,
}

impl Manifest {
    /// Parses and validates the text of a `plugin.toml`.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        if text.len() as u64 > MAX_MANIFEST_SIZE {
            return Err(ManifestError::TooLarge {
                size: text.len(),
                limit: MAX_MANIFEST_SIZE,
            });
        }
        let table: Table = toml::from_str(text).map_err(ManifestError::Syntax)?;
        Self::from_table(table)
    }

    /// Validates an already parsed TOML document.
    fn from_table(table: Table) -> Result<Self, ManifestError> {
        let mut top = Section::new(None, table, TOP_LEVEL_KEYS)?;

        let format = top.take_required("format")?;
        if format != Value::Integer(MANIFEST_FORMAT) {
            return Err(ManifestError::UnsupportedFormat {
                found: format.to_string(),
            });
        }

        let mut plugin = Section::new(Some("plugin"), top.required_table("plugin")?, PLUGIN_KEYS)?;
        let id = parse_id("plugin.id", &plugin.required_string("id")?)?;
        let version_text = plugin.required_string("version")?;
        let version =
            Version::parse(&version_text).map_err(|source| ManifestError::InvalidVersion {
                value: version_text.clone(),
                source,
            })?;
        let kind = plugin
            .required_string("kind")?
            .parse()
            .map_err(ManifestError::InvalidKind)?;
        let entry = plugin.required_string("entry")?;
        check_entry(&entry)?;
        let targets = parse_targets(kind, plugin.required_string_array("targets")?)?;
        let description = plugin.required_string("description")?;
        check_description(&description)?;
        let license = plugin.optional_string("license")?;
        if let Some(license) = &license {
            check_license(license)?;
        }
        let homepage = plugin.optional_string("homepage")?;
        if let Some(homepage) = &homepage {
            check_homepage(homepage)?;
        }
        let capabilities = parse_capabilities(
            plugin
                .optional_string_array("capabilities")?
                .unwrap_or_default(),
        )?;

        let mut host = Section::new(Some("host"), top.required_table("host")?, HOST_KEYS)?;
        let compatibility_text = host.required_string("compatibility")?;
        let host_compatibility =
            parse_version_req("host.compatibility", &compatibility_text).map(HostCompatibility)?;

        let dependencies = match top.optional_table("dependencies")? {
            Some(table) => parse_dependencies(&id, table)?,
            None => BTreeMap::new(),
        };
        // Free-form by design: tools keep their own data here and the format never reads it.
        let metadata = top.optional_table("metadata")?.unwrap_or_default();

        Ok(Self {
            id,
            version,
            kind,
            entry,
            targets,
            description,
            license,
            homepage,
            capabilities,
            host_compatibility,
            dependencies,
            metadata,
        })
    }

    /// Writes the manifest back as `plugin.toml` text, for tools that generate or rewrite one.
    ///
    /// [`Manifest::parse`] of the result gives back an equal manifest.
    pub fn to_toml(&self) -> Result<String, ManifestError> {
        toml::to_string(&self.document())
            .map_err(|error| ManifestError::Serialize(error.to_string()))
    }

    /// `plugin.id`.
    pub fn id(&self) -> &PluginId {
        &self.id
    }

    /// `plugin.version`.
    pub fn version(&self) -> &Version {
        &self.version
    }

    /// `plugin.kind`.
    pub fn kind(&self) -> PluginKind {
        self.kind
    }

    /// `plugin.entry`: the path, inside the package, of the file the host loads.
    pub fn entry(&self) -> &str {
        &self.entry
    }

    /// `plugin.targets`, in manifest order.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Whether the plugin runs on `target` (a wasm plugin runs everywhere).
    pub fn supports(&self, target: Target) -> bool {
        self.targets.contains(&Target::Any) || self.targets.contains(&target)
    }

    /// `plugin.description`.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// `plugin.license`, if given.
    pub fn license(&self) -> Option<&str> {
        self.license.as_deref()
    }

    /// `plugin.homepage`, if given; always an `https://` URL.
    pub fn homepage(&self) -> Option<&str> {
        self.homepage.as_deref()
    }

    /// `plugin.capabilities`, in manifest order (empty when absent).
    pub fn capabilities(&self) -> &[Capability] {
        &self.capabilities
    }

    /// `host.compatibility`.
    pub fn host_compatibility(&self) -> &HostCompatibility {
        &self.host_compatibility
    }

    /// `[dependencies]`: other plugins this one needs, with the versions it accepts.
    pub fn dependencies(&self) -> &BTreeMap<PluginId, VersionReq> {
        &self.dependencies
    }

    /// `[metadata]`: tool data, carried as written and never interpreted.
    pub fn metadata(&self) -> &Table {
        &self.metadata
    }

    fn document(&self) -> ManifestDocument<'_> {
        ManifestDocument {
            format: MANIFEST_FORMAT,
            plugin: PluginDocument {
                id: &self.id,
                version: &self.version,
                kind: self.kind,
                entry: &self.entry,
                targets: &self.targets,
                description: &self.description,
                license: self.license.as_deref(),
                homepage: self.homepage.as_deref(),
                capabilities: &self.capabilities,
            },
            host: HostDocument {
                compatibility: &self.host_compatibility,
            },
            dependencies: &self.dependencies,
            metadata: &self.metadata,
        }
    }
}

impl FromStr for Manifest {
    type Err = ManifestError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl Serialize for Manifest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.document().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Manifest {
    /// Accepts the `plugin.toml` shape from any self-describing format (TOML, JSON) and runs
    /// the same checks as [`Manifest::parse`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table = Table::deserialize(deserializer)?;
        Self::from_table(table).map_err(serde::de::Error::custom)
    }
}

/// The serialized shape of a manifest; field order is the order written to `plugin.toml`.
#[derive(Serialize)]
struct ManifestDocument<'a> {
    format: i64,
    plugin: PluginDocument<'a>,
    host: HostDocument<'a>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    dependencies: &'a BTreeMap<PluginId, VersionReq>,
    #[serde(skip_serializing_if = "Table::is_empty")]
    metadata: &'a Table,
}

#[derive(Serialize)]
struct PluginDocument<'a> {
    id: &'a PluginId,
    version: &'a Version,
    kind: PluginKind,
    entry: &'a str,
    targets: &'a [Target],
    description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    license: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    homepage: Option<&'a str>,
    #[serde(skip_serializing_if = "<[Capability]>::is_empty")]
    capabilities: &'a [Capability],
}

#[derive(Serialize)]
struct HostDocument<'a> {
    compatibility: &'a HostCompatibility,
}

// ---------------------------------------------------------------------------------------------
// Field access and checks
// ---------------------------------------------------------------------------------------------

/// One TOML table being consumed field by field, so every error can name its field.
struct Section {
    name: Option<&'static str>,
    table: Table,
}

impl Section {
    /// Opens a table, refusing keys outside `known` before any value is looked at, so a
    /// misspelt key is reported as such rather than as a missing field.
    fn new(
        name: Option<&'static str>,
        table: Table,
        known: &[&str],
    ) -> Result<Self, ManifestError> {
        if let Some(key) = table.keys().find(|key| !known.contains(&key.as_str())) {
            return Err(ManifestError::UnknownField {
                section: match name {
                    Some(name) => format!("[{name}]"),
                    None => "the top level".to_owned(),
                },
                key: key.clone(),
            });
        }
        Ok(Self { name, table })
    }

    fn field(&self, key: &str) -> String {
        match self.name {
            Some(name) => format!("{name}.{key}"),
            None => key.to_owned(),
        }
    }

    fn take_required(&mut self, key: &str) -> Result<Value, ManifestError> {
        self.table
            .remove(key)
            .ok_or_else(|| ManifestError::MissingField {
                field: self.field(key),
            })
    }

    fn wrong_type(&self, key: &str, expected: &'static str, found: &Value) -> ManifestError {
        ManifestError::WrongType {
            field: self.field(key),
            expected,
            found: found.type_str(),
        }
    }

    fn string(&self, key: &str, value: Value) -> Result<String, ManifestError> {
        match value {
            Value::String(text) => Ok(text),
            other => Err(self.wrong_type(key, "a string", &other)),
        }
    }

    fn string_array(&self, key: &str, value: Value) -> Result<Vec<String>, ManifestError> {
        let Value::Array(items) = value else {
            return Err(self.wrong_type(key, "an array of strings", &value));
        };
        items
            .into_iter()
            .map(|item| match item {
                Value::String(text) => Ok(text),
                other => Err(self.wrong_type(key, "an array of strings", &other)),
            })
            .collect()
    }

    fn table(&self, key: &str, value: Value) -> Result<Table, ManifestError> {
        match value {
            Value::Table(table) => Ok(table),
            other => Err(self.wrong_type(key, "a table", &other)),
        }
    }

    fn required_string(&mut self, key: &str) -> Result<String, ManifestError> {
        let value = self.take_required(key)?;
        self.string(key, value)
    }

    fn optional_string(&mut self, key: &str) -> Result<Option<String>, ManifestError> {
        self.table
            .remove(key)
            .map(|value| self.string(key, value))
            .transpose()
    }

    fn required_string_array(&mut self, key: &str) -> Result<Vec<String>, ManifestError> {
        let value = self.take_required(key)?;
        self.string_array(key, value)
    }

    fn optional_string_array(&mut self, key: &str) -> Result<Option<Vec<String>>, ManifestError> {
        self.table
            .remove(key)
            .map(|value| self.string_array(key, value))
            .transpose()
    }

    fn required_table(&mut self, key: &str) -> Result<Table, ManifestError> {
        let value = self.take_required(key)?;
        self.table(key, value)
    }

    fn optional_table(&mut self, key: &str) -> Result<Option<Table>, ManifestError> {
        self.table
            .remove(key)
            .map(|value| self.table(key, value))
            .transpose()
    }
}

fn parse_id(field: &str, text: &str) -> Result<PluginId, ManifestError> {
    text.parse().map_err(|source| ManifestError::InvalidId {
        field: field.to_owned(),
        source,
    })
}

fn parse_version_req(field: &str, text: &str) -> Result<VersionReq, ManifestError> {
    VersionReq::parse(text).map_err(|source| ManifestError::InvalidVersionReq {
        field: field.to_owned(),
        value: text.to_owned(),
        source,
    })
}

fn check_entry(entry: &str) -> Result<(), ManifestError> {
    check_package_path(entry, &PackageLimits::default()).map_err(|problem| {
        ManifestError::InvalidEntry {
            value: entry.to_owned(),
            problem,
        }
    })?;
    if entry == MANIFEST_FILE_NAME {
        return Err(ManifestError::EntryIsManifest);
    }
    Ok(())
}

fn parse_targets(kind: PluginKind, texts: Vec<String>) -> Result<Vec<Target>, ManifestError> {
    let mut targets = Vec::with_capacity(texts.len());
    for text in texts {
        let target: Target = text.parse().map_err(ManifestError::UnknownTarget)?;
        if targets.contains(&target) {
            return Err(ManifestError::DuplicateTarget(target));
        }
        targets.push(target);
    }
    if targets.is_empty() {
        return Err(ManifestError::NoTargets);
    }
    match kind {
        PluginKind::Wasm if targets != [Target::Any] => Err(ManifestError::WasmTargetsNotAny),
        PluginKind::Native if targets.contains(&Target::Any) => Err(ManifestError::NativeTargetAny),
        _ => Ok(targets),
    }
}

fn check_description(description: &str) -> Result<(), ManifestError> {
    let invalid = |reason: String| Err(ManifestError::InvalidDescription { reason });
    if description.trim().is_empty() {
        return invalid("must not be empty".to_owned());
    }
    let length = description.chars().count();
    if length > MAX_DESCRIPTION_CHARS {
        return invalid(format!(
            "must be at most {MAX_DESCRIPTION_CHARS} characters, found {length}"
        ));
    }
    // A description is one line shown in lists; line breaks and escapes would break layouts.
    if description.chars().any(char::is_control) {
        return invalid("must be one line without control characters".to_owned());
    }
    Ok(())
}

fn check_license(license: &str) -> Result<(), ManifestError> {
    // SPDX expressions use identifiers (letters, digits, `-`, `.`, `+`), `LicenseRef-…`
    // with an optional `DocumentRef-…:` prefix, the operators AND/OR/WITH and parentheses.
    let valid = !license.trim().is_empty()
        && license.chars().count() <= MAX_LICENSE_CHARS
        && license.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '+' | ':' | '(' | ')' | ' ')
        });
    if valid {
        Ok(())
    } else {
        Err(ManifestError::InvalidLicense(license.to_owned()))
    }
}

fn check_homepage(homepage: &str) -> Result<(), ManifestError> {
    let host = homepage
        .strip_prefix("https://")
        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default());
    let valid = homepage.len() <= MAX_HOMEPAGE_LEN
        && host.is_some_and(|host| !host.is_empty())
        && !homepage
            .chars()
            .any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(())
    } else {
        Err(ManifestError::InvalidHomepage(homepage.to_owned()))
    }
}

fn parse_capabilities(texts: Vec<String>) -> Result<Vec<Capability>, ManifestError> {
    let mut capabilities = Vec::with_capacity(texts.len());
    for text in texts {
        let capability: Capability = text.parse().map_err(ManifestError::InvalidCapability)?;
        if capabilities.contains(&capability) {
            return Err(ManifestError::DuplicateCapability(capability));
        }
        capabilities.push(capability);
    }
    Ok(capabilities)
}

fn parse_dependencies(
    own_id: &PluginId,
    table: Table,
) -> Result<BTreeMap<PluginId, VersionReq>, ManifestError> {
    let mut dependencies = BTreeMap::new();
    for (key, value) in table {
        let id = parse_id("dependencies", &key)?;
        if &id == own_id {
            return Err(ManifestError::SelfDependency(id));
        }
        let field = format!("dependencies.\"{key}\"");
        let Value::String(requirement) = value else {
            return Err(ManifestError::WrongType {
                field,
                expected: "a version requirement string",
                found: value.type_str(),
            });
        };
        let requirement = parse_version_req(&field, &requirement)?;
        dependencies.insert(id, requirement);
    }
    Ok(dependencies)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass check agrees with the rules on every string of up to five characters
    /// from an alphabet of each kind of character, and around the length limits.
    #[test]
    fn the_fast_id_part_check_agrees_with_the_rules() {
        const ALPHABET: [char; 7] = ['a', 'z', '0', '-', 'A', '_', 'é'];
        let mut parts = vec![String::new()];
        let mut frontier = parts.clone();
        for _ in 0..5 {
            frontier = frontier
                .iter()
                .flat_map(|prefix| ALPHABET.iter().map(move |c| format!("{prefix}{c}")))
                .collect();
            parts.extend(frontier.iter().cloned());
        }
        for length in MAX_ID_PART_LEN - 1..=MAX_ID_PART_LEN + 1 {
            parts.push("a".repeat(length));
            parts.push(format!("a{}", "é".repeat(length - 1)));
            parts.push(format!("a{}-", "1".repeat(length - 2)));
        }
        for part in &parts {
            assert_eq!(
                is_plain_id_part(part.as_bytes()),
                id_part_problem(part).is_ok(),
                "{part:?}"
            );
        }
    }

    const FULL: &str = r#"
format = 1

[plugin]
id = "acme/widget"
version = "1.2.3"
kind = "wasm"
entry = "plugin.wasm"
targets = ["any"]
description = "Adds widgets to the toolbar"
license = "MIT OR Apache-2.0"
homepage = "https://acme.example/widget"
capabilities = ["fs.read", "net.http"]

[host]
compatibility = ">=1.4, <2"

[dependencies]
"acme/other" = "^1.2"

[metadata]
tool = { name = "builder", generated = true }
"#;

    fn with_plugin_field(field: &str, value: &str) -> String {
        let mut lines: Vec<String> = FULL
            .lines()
            .filter(|line| !line.starts_with(&format!("{field} =")))
            .map(str::to_owned)
            .collect();
        if !value.is_empty() {
            let at = lines.iter().position(|line| line == "[plugin]").unwrap() + 1;
            lines.insert(at, format!("{field} = {value}"));
        }
        lines.join("\n")
    }

    fn error_of(text: &str) -> ManifestError {
        Manifest::parse(text).expect_err("manifest should be refused")
    }

    #[test]
    fn parses_every_field() {
        let manifest = Manifest::parse(FULL).unwrap();
        assert_eq!(manifest.id().to_string(), "acme/widget");
        assert_eq!(manifest.id().publisher(), "acme");
        assert_eq!(manifest.id().name(), "widget");
        assert_eq!(manifest.version(), &Version::new(1, 2, 3));
        assert_eq!(manifest.kind(), PluginKind::Wasm);
        assert_eq!(manifest.entry(), "plugin.wasm");
        assert_eq!(manifest.targets(), [Target::Any]);
        assert!(manifest.supports(Target::LinuxAarch64));
        assert_eq!(manifest.description(), "Adds widgets to the toolbar");
        assert_eq!(manifest.license(), Some("MIT OR Apache-2.0"));
        assert_eq!(manifest.homepage(), Some("https://acme.example/widget"));
        assert_eq!(
            manifest.capabilities(),
            [Capability::FsRead, Capability::NetHttp]
        );
        assert!(manifest.host_compatibility().allows(&Version::new(1, 9, 0)));
        assert!(!manifest.host_compatibility().allows(&Version::new(2, 0, 0)));
        assert!(!manifest.host_compatibility().allows(&Version::new(1, 3, 9)));
        let other: PluginId = "acme/other".parse().unwrap();
        assert_eq!(
            manifest.dependencies().get(&other),
            Some(&VersionReq::parse("^1.2").unwrap())
        );
        assert!(manifest.metadata().contains_key("tool"));
    }

    #[test]
    fn minimal_manifest_has_empty_optional_parts() {
        let manifest = Manifest::parse(
            r#"
format = 1
[plugin]
id = "ab/cd"
version = "0.1.0"
kind = "native"
entry = "bin/cd.dll"
targets = ["windows-x86_64", "windows-aarch64"]
description = "x"
[host]
compatibility = "*"
"#,
        )
        .unwrap();
        assert_eq!(manifest.license(), None);
        assert_eq!(manifest.homepage(), None);
        assert!(manifest.capabilities().is_empty());
        assert!(manifest.dependencies().is_empty());
        assert!(manifest.metadata().is_empty());
        assert!(manifest.supports(Target::WindowsAarch64));
        assert!(!manifest.supports(Target::LinuxX86_64));
    }

    #[test]
    fn to_toml_round_trips() {
        let manifest = Manifest::parse(FULL).unwrap();
        let text = manifest.to_toml().unwrap();
        assert!(text.starts_with("format = 1\n"), "{text}");
        assert_eq!(Manifest::parse(&text).unwrap(), manifest);
    }

    #[test]
    fn json_round_trips_through_the_same_checks() {
        let manifest = Manifest::parse(FULL).unwrap();
        let json = serde_json::to_value(&manifest).unwrap();
        assert_eq!(json["plugin"]["id"], "acme/widget");
        assert_eq!(json["host"]["compatibility"], ">=1.4, <2");
        assert_eq!(
            serde_json::from_value::<Manifest>(json.clone()).unwrap(),
            manifest
        );

        let mut tampered = json;
        tampered["plugin"]["targets"] = serde_json::json!(["linux-x86_64"]);
        let error = serde_json::from_value::<Manifest>(tampered).unwrap_err();
        assert!(error.to_string().contains("plugin.targets"), "{error}");
    }

    #[test]
    fn format_must_be_one() {
        let text = FULL.replace("format = 1", "format = 2");
        assert!(
            matches!(error_of(&text), ManifestError::UnsupportedFormat { found } if found == "2")
        );
        let text = FULL.replace("format = 1", "format = \"1\"");
        assert!(matches!(
            error_of(&text),
            ManifestError::UnsupportedFormat { .. }
        ));
        let text = FULL.replace("format = 1", "");
        assert_eq!(
            error_of(&text).to_string(),
            "format: required field is missing"
        );
    }

    #[test]
    fn unknown_fields_name_their_section() {
        let text = with_plugin_field("foo", "1");
        let error = error_of(&text);
        assert_eq!(
            error.to_string(),
            "unknown field `foo` in [plugin]; if this is tool data, put it under [metadata]"
        );
        let text = FULL.replace("[host]", "[host]\nminimum = \"1\"");
        assert!(matches!(error_of(&text),
            ManifestError::UnknownField { section, key } if section == "[host]" && key == "minimum"));
        let text = format!("extra = true\n{FULL}");
        assert!(matches!(error_of(&text),
            ManifestError::UnknownField { section, key } if section == "the top level" && key == "extra"));
        let text = FULL.replace("[metadata]", "[plugin.extra]\na = 1\n[metadata]");
        assert!(
            matches!(error_of(&text), ManifestError::UnknownField { key, .. } if key == "extra")
        );
        // A misspelt required field is reported as unknown, not as missing.
        let text = FULL.replace("version = ", "verison = ");
        assert!(
            matches!(error_of(&text), ManifestError::UnknownField { key, .. } if key == "verison")
        );
    }

    #[test]
    fn missing_fields_are_named() {
        for field in ["id", "version", "kind", "entry", "targets", "description"] {
            let text = with_plugin_field(field, "");
            assert!(
                matches!(error_of(&text), ManifestError::MissingField { field: f } if f == format!("plugin.{field}")),
                "{field}"
            );
        }
        let text = FULL.replace("compatibility = \">=1.4, <2\"", "");
        assert_eq!(
            error_of(&text).to_string(),
            "host.compatibility: required field is missing"
        );
        let text = FULL.replace("[host]\ncompatibility = \">=1.4, <2\"", "");
        assert_eq!(
            error_of(&text).to_string(),
            "host: required field is missing"
        );
    }

    #[test]
    fn wrong_types_are_named() {
        let error = error_of(&with_plugin_field("version", "1"));
        assert_eq!(
            error.to_string(),
            "plugin.version: expected a string, found integer"
        );
        let error = error_of(&with_plugin_field("targets", "\"any\""));
        assert_eq!(
            error.to_string(),
            "plugin.targets: expected an array of strings, found string"
        );
        let error = error_of(&with_plugin_field("capabilities", "[1]"));
        assert!(
            matches!(error, ManifestError::WrongType { field, .. } if field == "plugin.capabilities")
        );
        let error = error_of(&FULL.replace("\"acme/other\" = \"^1.2\"", "\"acme/other\" = 1"));
        assert!(
            matches!(error, ManifestError::WrongType { field, .. } if field == "dependencies.\"acme/other\"")
        );
    }

    #[test]
    fn version_errors_are_precise() {
        let error = error_of(&with_plugin_field("version", "\"1.2\""));
        let message = error.to_string();
        assert!(
            message.starts_with(
                "plugin.version: `1.2` is not a semver version (expected MAJOR.MINOR.PATCH)"
            ),
            "{message}"
        );
        let error = error_of(&FULL.replace(">=1.4, <2", ">=banana"));
        assert!(
            matches!(error, ManifestError::InvalidVersionReq { field, .. } if field == "host.compatibility")
        );
        let error = error_of(&FULL.replace("\"^1.2\"", "\"^x\""));
        assert!(
            matches!(error, ManifestError::InvalidVersionReq { field, .. } if field == "dependencies.\"acme/other\"")
        );
    }

    #[test]
    fn plugin_ids_follow_the_naming_rules() {
        for good in [
            "ab/cd",
            "acme/widget",
            "a1/b-2",
            &format!("{}/xy", "a".repeat(39)),
        ] {
            assert!(good.parse::<PluginId>().is_ok(), "{good}");
        }
        let cases: &[(&str, PluginIdError)] = &[
            ("acme", PluginIdError::NotPublisherSlashName("acme".into())),
            (
                "a/widget",
                PluginIdError::Publisher {
                    publisher: "a".into(),
                    problem: IdPartError::Length(1),
                },
            ),
            (
                "acme/Widget",
                PluginIdError::Name {
                    name: "Widget".into(),
                    problem: IdPartError::NotStartingWithLetter,
                },
            ),
            (
                "acme/wid_get",
                PluginIdError::Name {
                    name: "wid_get".into(),
                    problem: IdPartError::InvalidCharacter('_'),
                },
            ),
            (
                "acme/wid--get",
                PluginIdError::Name {
                    name: "wid--get".into(),
                    problem: IdPartError::DoubleHyphen,
                },
            ),
            (
                "acme/widget-",
                PluginIdError::Name {
                    name: "widget-".into(),
                    problem: IdPartError::TrailingHyphen,
                },
            ),
            (
                "1acme/widget",
                PluginIdError::Publisher {
                    publisher: "1acme".into(),
                    problem: IdPartError::NotStartingWithLetter,
                },
            ),
            (
                "acme/wid/get",
                PluginIdError::Name {
                    name: "wid/get".into(),
                    problem: IdPartError::InvalidCharacter('/'),
                },
            ),
            (
                "acme/wïdget",
                PluginIdError::Name {
                    name: "wïdget".into(),
                    problem: IdPartError::InvalidCharacter('ï'),
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(&text.parse::<PluginId>().unwrap_err(), expected, "{text}");
        }
        assert!(
            format!("{}/xy", "a".repeat(40))
                .parse::<PluginId>()
                .is_err()
        );
        let error = error_of(&with_plugin_field("id", "\"Acme/widget\""));
        assert!(
            error.to_string().starts_with("plugin.id: publisher `Acme`"),
            "{error}"
        );
        let error = error_of(&FULL.replace("\"acme/other\"", "\"acme\""));
        assert!(matches!(error, ManifestError::InvalidId { field, .. } if field == "dependencies"));
    }

    #[test]
    fn targets_follow_the_kind() {
        let error = error_of(&with_plugin_field("targets", "[\"linux-x86_64\"]"));
        assert!(matches!(error, ManifestError::WasmTargetsNotAny));
        let error = error_of(&with_plugin_field("targets", "[\"any\", \"linux-x86_64\"]"));
        assert!(matches!(error, ManifestError::WasmTargetsNotAny));
        let native = FULL.replace("kind = \"wasm\"", "kind = \"native\"");
        assert!(matches!(error_of(&native), ManifestError::NativeTargetAny));
        let native = native.replace("[\"any\"]", "[\"linux-x86_64\", \"linux-x86_64\"]");
        assert!(matches!(
            error_of(&native),
            ManifestError::DuplicateTarget(Target::LinuxX86_64)
        ));
        let error = error_of(&with_plugin_field("targets", "[]"));
        assert!(matches!(error, ManifestError::NoTargets));
        let error = error_of(&with_plugin_field("targets", "[\"linux-riscv64\"]"));
        assert_eq!(
            error.to_string(),
            "plugin.targets: unknown target `linux-riscv64`; known targets: any, windows-x86_64, \
             windows-aarch64, linux-x86_64, linux-aarch64, macos-x86_64, macos-aarch64"
        );
        let error = error_of(&with_plugin_field("kind", "\"jar\""));
        assert!(matches!(error, ManifestError::InvalidKind(_)));
        for target in Target::ALL {
            assert_eq!(target.as_str().parse::<Target>(), Ok(target));
        }
    }

    #[test]
    fn entry_must_be_a_package_path() {
        for (entry, problem) in [
            ("../plugin.wasm", PathProblem::ParentDirComponent),
            ("/plugin.wasm", PathProblem::Absolute),
            ("C:/plugin.wasm", PathProblem::Absolute),
            ("bin\\plugin.wasm", PathProblem::Backslash),
            ("./plugin.wasm", PathProblem::NotCanonical),
            ("", PathProblem::Empty),
            (
                "con.wasm",
                PathProblem::WindowsReservedName("con.wasm".into()),
            ),
        ] {
            let error = error_of(&with_plugin_field("entry", &format!("{entry:?}")));
            assert!(
                matches!(&error, ManifestError::InvalidEntry { value, problem: p } if value == entry && *p == problem),
                "{entry}: {error}"
            );
        }
        let error = error_of(&with_plugin_field("entry", "\"plugin.toml\""));
        assert!(matches!(error, ManifestError::EntryIsManifest));
    }

    #[test]
    fn text_fields_are_checked() {
        let error = error_of(&with_plugin_field("description", "\"  \""));
        assert!(matches!(error, ManifestError::InvalidDescription { .. }));
        let long = "x".repeat(301);
        let error = error_of(&with_plugin_field("description", &format!("{long:?}")));
        assert_eq!(
            error.to_string(),
            "plugin.description: must be at most 300 characters, found 301"
        );
        // 300 multi-byte characters are fine: the limit counts characters.
        let wide = "é".repeat(300);
        assert!(Manifest::parse(&with_plugin_field("description", &format!("{wide:?}"))).is_ok());
        let error = error_of(&with_plugin_field("description", "\"two\\nlines\""));
        assert!(matches!(error, ManifestError::InvalidDescription { .. }));

        let error = error_of(&with_plugin_field("license", "\"MIT; rm -rf\""));
        assert!(matches!(error, ManifestError::InvalidLicense(_)));
        for license in [
            "MIT",
            "Apache-2.0 OR MIT",
            "GPL-2.0-or-later WITH Classpath-exception-2.0",
            "LicenseRef-Proprietary",
        ] {
            assert!(
                Manifest::parse(&with_plugin_field("license", &format!("{license:?}"))).is_ok(),
                "{license}"
            );
        }

        for homepage in [
            "http://acme.example",
            "https://",
            "https:///path",
            "ftp://x",
            "https://a b",
        ] {
            let error = error_of(&with_plugin_field("homepage", &format!("{homepage:?}")));
            assert!(
                matches!(&error, ManifestError::InvalidHomepage(h) if h == homepage),
                "{homepage}"
            );
        }
    }

    #[test]
    fn capabilities_must_be_known() {
        let error = error_of(&with_plugin_field("capabilities", "[\"fs.delete\"]"));
        assert!(
            matches!(error, ManifestError::InvalidCapability(CapabilityError::Unknown(name)) if name == "fs.delete")
        );
        let error = error_of(&with_plugin_field("capabilities", "[\"FS.Read\"]"));
        assert!(matches!(
            error,
            ManifestError::InvalidCapability(CapabilityError::Malformed(_))
        ));
        let error = error_of(&with_plugin_field("capabilities", "[\"log\", \"log\"]"));
        assert!(matches!(
            error,
            ManifestError::DuplicateCapability(Capability::Log)
        ));
        for capability in KNOWN_CAPABILITIES {
            assert_eq!(capability.as_str().parse::<Capability>(), Ok(*capability));
            assert!(is_dotted_identifier(capability.as_str()));
        }
    }

    #[test]
    fn every_capability_is_listed() {
        // Adding a variant without listing it would make it impossible to request.
        for capability in KNOWN_CAPABILITIES {
            match capability {
                Capability::Log
                | Capability::FsRead
                | Capability::FsWrite
                | Capability::NetHttp
                | Capability::NetSocket
                | Capability::Clipboard
                | Capability::ProcessSpawn
                | Capability::EnvRead
                | Capability::UiDialog => {}
            }
        }
        assert_eq!(KNOWN_CAPABILITIES.len(), 9);
    }

    #[test]
    fn a_plugin_cannot_depend_on_itself() {
        let error = error_of(&FULL.replace("\"acme/other\"", "\"acme/widget\""));
        assert!(matches!(error, ManifestError::SelfDependency(_)));
    }

    #[test]
    fn syntax_errors_and_size_are_reported() {
        assert!(matches!(error_of("format = "), ManifestError::Syntax(_)));
        let huge = format!("{FULL}\n# {}", "x".repeat(70_000));
        assert!(matches!(error_of(&huge), ManifestError::TooLarge { .. }));
    }
}
