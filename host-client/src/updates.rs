//! The update check: what the store's API offers, and what of it the signed metadata
//! confirms.
//!
//! The API answer (`POST /api/v1/updates/check`) is only a hint of what to look at. Every
//! offer is looked up in TUF by the plugin and version it names; the package's length and
//! SHA-256 come from the signed target, never from the API, and the API's URL is used only
//! when the SHA-256 it gives matches the signed one. An offer is refused, with its own
//! [`RefusalReason`], when the signed metadata does not list it, lists it as yanked or
//! blocked, for another plugin, not newer than the installed version, or not for this host.
//! Revocations are taken from the signed metadata too: an installed version whose target is
//! `blocked` is revoked whether or not the API says so.

use std::collections::HashMap;

use plugstore_format::digest::PackageDigest;
use plugstore_format::manifest::{PluginId, Target};
use plugstore_tuf::client::{Fetch, TrustedState};
use plugstore_tuf::custom::{PackageTarget, VersionState};
use plugstore_tuf::digest::Sha256;
use plugstore_tuf::error::VerificationError;
use plugstore_tuf::layout::TargetPath;
use plugstore_tuf::time::UnixTime;
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::install::InstalledPlugin;

/// Which releases a host follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Stable releases only.
    #[default]
    Stable,
    /// Pre-releases too.
    Beta,
}

/// The host application the plugins run in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostApp {
    /// The application's id, e.g. `org.example.editor`.
    pub app_id: String,
    /// Its version: packages whose host range excludes it are refused.
    pub version: Version,
    /// The platform it runs on: packages for other platforms are refused.
    pub platform: Target,
}

/// A package (or patch) the client may download: where, and what it must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedBlob {
    /// The signed target path.
    pub target: TargetPath,
    /// Where to download it from.
    pub url: String,
    /// The signed length.
    pub length: u64,
    /// The signed SHA-256.
    pub sha256: Sha256,
}

/// A version of a plugin the signed metadata lists as installable on this host. Only this
/// crate makes these (from signed metadata), hence `non_exhaustive`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedPackage {
    /// The plugin.
    pub id: PluginId,
    /// The version.
    pub version: Version,
    /// The full package.
    pub package: VerifiedBlob,
    /// A patch from the installed package, when the store signed one.
    pub patch: Option<VerifiedBlob>,
    /// The store's signed facts about the package (developer signature, capabilities…).
    pub info: PackageTarget,
}

/// An update the signed metadata confirms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedUpdate {
    /// The version installed now.
    pub installed_version: Version,
    /// The new version.
    pub package: VerifiedPackage,
}

/// Why an offer of the API was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum RefusalReason {
    /// The offer is not of the documented shape.
    #[error("malformed offer: {0}")]
    Malformed(String),
    /// The offer is for a plugin this host has not installed.
    #[error("the plugin is not installed")]
    NotInstalled,
    /// The signed metadata does not list the offered version, or failed verification.
    #[error("not confirmed by the signed metadata: {0}")]
    Unverified(#[from] VerificationError),
    /// The API's target names another plugin or version than the offer.
    #[error("the offer for {offered} points at the target {target}")]
    WrongPlugin {
        /// What the offer says it is.
        offered: String,
        /// The target path it gives.
        target: String,
    },
    /// The signed metadata lists the version as yanked.
    #[error("version {0} is yanked")]
    Yanked(Version),
    /// The signed metadata lists the version as blocked.
    #[error("version {0} is blocked by the store")]
    Blocked(Version),
    /// The offered version is not newer than the installed one.
    #[error("version {offered} is not newer than the installed {installed}")]
    NotNewer {
        /// Installed.
        installed: Version,
        /// Offered.
        offered: Version,
    },
    /// The package is not for this host's platform.
    #[error("the package is for {platforms}, not {platform}")]
    WrongPlatform {
        /// The host's platform.
        platform: Target,
        /// The package's platforms.
        platforms: String,
    },
    /// A pre-release offered to a host on the stable channel.
    #[error("version {0} is a pre-release and this host follows the stable channel")]
    PreRelease(Version),
    /// The signed target of the version changed between the check and the install.
    #[error("the signed package of version {0} changed since the update check")]
    ChangedSinceCheck(Version),
    /// The package does not work with this host version.
    #[error("the package needs host {required}, this is {host}")]
    IncompatibleHost {
        /// The package's host range.
        required: String,
        /// The host's version.
        host: Version,
    },
}

impl RefusalReason {
    /// Whether metadata newer than the client's could make the offer acceptable: the version
    /// is not listed yet, or listed in a state that a later round may have changed.
    fn may_change_with_newer_metadata(&self) -> bool {
        matches!(
            self,
            Self::Unverified(VerificationError::UnknownTarget { .. })
                | Self::Yanked(_)
                | Self::Blocked(_)
        )
    }
}

/// An offer that was not accepted.
#[derive(Debug)]
pub struct Refusal {
    /// The plugin the offer named (as the API spelled it).
    pub id: String,
    /// The version the offer named (as the API spelled it).
    pub version: String,
    /// Why.
    pub reason: RefusalReason,
}

/// An offer the store says it signed in a snapshot newer than the one this client verified,
/// and which that older snapshot does not confirm. Usually a cache in front of the store (a
/// CDN keeps `timestamp.json` for its `max-age`, 30 s by default) still serves the previous
/// timestamp: ask again later. Nothing of it is installable until signed metadata confirms
/// it; an offer that stays here across checks further apart than that `max-age` is one the
/// store's API invents (see the security model).
#[derive(Debug)]
pub struct AwaitingMetadata {
    /// The plugin the offer named (as the API spelled it).
    pub id: String,
    /// The version the offer named (as the API spelled it).
    pub version: String,
    /// The snapshot version the API says signs the offer.
    pub signed_in_snapshot: u64,
    /// The newest snapshot version this client has verified.
    pub verified_snapshot: u64,
    /// What the verified metadata says of the offer now.
    pub reason: RefusalReason,
}

/// An installed version the store revoked, as its signed metadata confirms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// The plugin.
    pub id: PluginId,
    /// The revoked version.
    pub version: Version,
    /// Its package digest.
    pub sha256: Sha256,
    /// The reason the API gave (`version-blocked`, `plugin-blocked`, `certificate-revoked`),
    /// when it gave one.
    pub reason: Option<String>,
    /// The API's explanation, when it gave one.
    pub detail: Option<String>,
}

/// The result of [`crate::Client::check_updates`].
#[derive(Debug, Default)]
pub struct UpdateCheck {
    /// Updates confirmed by the signed metadata.
    pub updates: Vec<VerifiedUpdate>,
    /// Offers that were refused, each with its reason.
    pub refusals: Vec<Refusal>,
    /// Offers signed in metadata newer than this client has seen yet; ask again later.
    pub awaiting: Vec<AwaitingMetadata>,
    /// Installed versions the store revoked; these plugins are now disabled.
    pub revocations: Vec<Revocation>,
}

// ---------------------------------------------------------------------------------------------
// Wire types of the update-check API
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
pub(crate) struct CheckRequest<'a> {
    pub(crate) host: HostWire<'a>,
    pub(crate) channel: Channel,
    pub(crate) install_id: &'a str,
    pub(crate) installed: Vec<InstalledWire>,
}

#[derive(Serialize)]
pub(crate) struct HostWire<'a> {
    pub(crate) app_id: &'a str,
    pub(crate) version: String,
    pub(crate) platform: &'static str,
}

#[derive(Serialize)]
pub(crate) struct InstalledWire {
    pub(crate) id: String,
    pub(crate) version: String,
    pub(crate) sha256: String,
}

/// The answer, with each offer kept raw so one malformed offer is refused alone.
#[derive(Default, Deserialize)]
pub(crate) struct CheckResponse {
    #[serde(default)]
    pub(crate) updates: Vec<serde_json::Value>,
    #[serde(default)]
    pub(crate) revocations: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Offer {
    id: String,
    version: String,
    /// Absent from stores older than the field.
    #[serde(default)]
    signed_in_snapshot: Option<u64>,
    package: OfferedBlob,
    #[serde(default)]
    patch: Option<OfferedBlob>,
}

#[derive(Deserialize)]
pub(crate) struct OfferedBlob {
    target: String,
    url: String,
    sha256: String,
}

#[derive(Deserialize)]
struct ApiRevocation {
    id: String,
    version: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

/// An RFC 9457 problem document.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Problem {
    #[serde(default, rename = "type")]
    pub(crate) kind: Option<String>,
    #[serde(default)]
    pub(crate) title: Option<String>,
    #[serde(default)]
    pub(crate) detail: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Checking offers against TUF
// ---------------------------------------------------------------------------------------------

/// What the checks need besides the metadata.
pub(crate) struct CheckContext<'a> {
    pub(crate) host: &'a HostApp,
    pub(crate) channel: Channel,
    /// `{base_url}` without a trailing `/`.
    pub(crate) base_url: &'a str,
    pub(crate) now: UnixTime,
}

impl CheckContext<'_> {
    fn blob_url(&self, sha256: Sha256) -> String {
        format!("{}/blobs/sha256/{}", self.base_url, sha256.to_hex())
    }

    /// The API's URL when it claims the signed SHA-256 (so it is at worst a mirror that
    /// serves wrong bytes, which the hash check refuses) and is no less private than the
    /// store's, else the store's blob URL.
    fn url_for(&self, offered: Option<&OfferedBlob>, signed: Sha256) -> String {
        match offered {
            Some(blob)
                if blob.sha256.parse::<Sha256>().ok() == Some(signed)
                    && is_as_private_as(&blob.url, self.base_url) =>
            {
                blob.url.clone()
            }
            _ => self.blob_url(signed),
        }
    }
}

/// Whether fetching `url` reveals no more to the network than fetching from `base_url`:
/// https is always fine, plain http only for a store reached over plain http (a local test
/// store). The hash check keeps the bytes right either way; this keeps which plugins a host
/// runs from being read off the wire when the host chose https.
pub(crate) fn is_as_private_as(url: &str, base_url: &str) -> bool {
    let scheme = |url: &str| {
        url.split_once("://")
            .map(|(scheme, _)| scheme.to_ascii_lowercase())
    };
    match scheme(url).as_deref() {
        Some("https") => true,
        Some("http") => scheme(base_url).as_deref() == Some("http"),
        _ => false,
    }
}

/// Why a version is about to be installed, which decides whether a yanked one may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InstallReason {
    /// Offered as an update: yanked versions are never offered (DESIGN.md, version
    /// lifecycle), so an offer of one is refused.
    Update,
    /// Asked for by version, as a lock file pins one: a yanked version stays installable,
    /// as a yanked crate stays usable from a Cargo.lock. Blocked versions never are.
    Pinned,
}

/// Looks `version` of `id` up in the signed metadata and checks it can be installed on this
/// host for `reason`; `installed` is the package it would replace (for a patch).
#[allow(
    clippy::too_many_arguments,
    reason = "one verification step with its inputs"
)]
pub(crate) fn verified_package<F: Fetch + ?Sized>(
    state: &mut TrustedState,
    fetch: &mut F,
    context: &CheckContext<'_>,
    reason: InstallReason,
    id: &PluginId,
    version: &Version,
    installed: Option<Sha256>,
    offered: Option<(&OfferedBlob, Option<&OfferedBlob>)>,
) -> Result<VerifiedPackage, RefusalReason> {
    let target = state.target_info(fetch, id, version, context.now)?;
    let info = target.info();
    if &info.plugin != id || &info.version != version {
        return Err(RefusalReason::WrongPlugin {
            offered: format!("{id} {version}"),
            target: target.path().to_string(),
        });
    }
    let package = info
        .package()
        .ok_or_else(|| RefusalReason::Malformed("the signed target is not a package".to_owned()))?
        .clone();
    match package.state {
        VersionState::Published => {}
        VersionState::Yanked if reason == InstallReason::Pinned => {}
        VersionState::Yanked => return Err(RefusalReason::Yanked(version.clone())),
        VersionState::Blocked => return Err(RefusalReason::Blocked(version.clone())),
    }
    let platform = context.host.platform;
    if !package
        .platforms
        .iter()
        .any(|p| *p == Target::Any || *p == platform)
    {
        return Err(RefusalReason::WrongPlatform {
            platform,
            platforms: package
                .platforms
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    if !package.host.allows(&context.host.version) {
        return Err(RefusalReason::IncompatibleHost {
            required: package.host.requirement().to_string(),
            host: context.host.version.clone(),
        });
    }
    let (offered_package, offered_patch) = offered.unzip();
    let patch = installed.and_then(|base| {
        signed_patch(
            state,
            fetch,
            context,
            id,
            version,
            base,
            target.sha256(),
            offered_patch.flatten(),
        )
    });
    Ok(VerifiedPackage {
        id: id.clone(),
        version: version.clone(),
        package: VerifiedBlob {
            target: target.path().clone(),
            url: context.url_for(offered_package, target.sha256()),
            length: target.length(),
            sha256: target.sha256(),
        },
        patch,
        info: package,
    })
}

/// The newest version of `id` the signed metadata lists as published for this host's
/// platform and version (pre-releases only on the beta channel).
pub(crate) fn latest_installable<F: Fetch + ?Sized>(
    state: &mut TrustedState,
    fetch: &mut F,
    context: &CheckContext<'_>,
    id: &PluginId,
) -> Result<Option<Version>, VerificationError> {
    let targets = state.targets_for_plugin(fetch, id, context.now)?;
    Ok(targets
        .iter()
        .filter_map(|target| {
            let package = target.info().package()?;
            let version = &target.info().version;
            let fits = package.state == VersionState::Published
                && (context.channel == Channel::Beta || version.pre.is_empty())
                && package
                    .platforms
                    .iter()
                    .any(|p| *p == Target::Any || *p == context.host.platform)
                && package.host.allows(&context.host.version);
            fits.then(|| version.clone())
        })
        .max())
}

/// The signed patch from `base` to `version`, when there is one that produces the package.
#[expect(
    clippy::too_many_arguments,
    reason = "one lookup with everything it checks"
)]
fn signed_patch<F: Fetch + ?Sized>(
    state: &mut TrustedState,
    fetch: &mut F,
    context: &CheckContext<'_>,
    id: &PluginId,
    version: &Version,
    base: Sha256,
    package_sha256: Sha256,
    offered: Option<&OfferedBlob>,
) -> Option<VerifiedBlob> {
    let path = TargetPath::patch(id.clone(), version.clone(), PackageDigest::from(base));
    let target = state.target(fetch, &path, context.now).ok()?;
    let patch = target.info().patch()?;
    if Sha256::from(patch.to) != package_sha256 {
        return None;
    }
    Some(VerifiedBlob {
        target: path,
        url: context.url_for(offered, target.sha256()),
        length: target.length(),
        sha256: target.sha256(),
    })
}

/// Checks every offer of the API against the signed metadata.
pub(crate) fn check_offers<F: Fetch + ?Sized>(
    state: &mut TrustedState,
    fetch: &mut F,
    context: &CheckContext<'_>,
    offers: &[serde_json::Value],
    installed: &[InstalledPlugin],
) -> CheckedOffers {
    let by_id: HashMap<String, &InstalledPlugin> = installed
        .iter()
        .map(|plugin| (plugin.id.to_string(), plugin))
        .collect();
    let mut checked = CheckedOffers::default();
    let CheckedOffers {
        updates,
        refusals,
        awaiting,
    } = &mut checked;
    for raw in offers {
        let offer: Offer = match serde_json::from_value(raw.clone()) {
            Ok(offer) => offer,
            Err(error) => {
                refusals.push(Refusal {
                    id: raw["id"].as_str().unwrap_or_default().to_owned(),
                    version: raw["version"].as_str().unwrap_or_default().to_owned(),
                    reason: RefusalReason::Malformed(error.to_string()),
                });
                continue;
            }
        };
        let reason = match check_offer(state, fetch, context, &offer, &by_id) {
            Ok(update) => {
                updates.push(update);
                continue;
            }
            Err(reason) => reason,
        };
        // The timestamp is fetched through caches that may be a few seconds behind the
        // store; a "not listed" from metadata older than what signed the offer is "not yet".
        match (offer.signed_in_snapshot, state.snapshot_version()) {
            (Some(signed_in_snapshot), Some(verified_snapshot))
                if signed_in_snapshot > verified_snapshot
                    && reason.may_change_with_newer_metadata() =>
            {
                awaiting.push(AwaitingMetadata {
                    id: offer.id,
                    version: offer.version,
                    signed_in_snapshot,
                    verified_snapshot,
                    reason,
                });
            }
            _ => refusals.push(Refusal {
                id: offer.id,
                version: offer.version,
                reason,
            }),
        }
    }
    checked
}

/// The API's offers, sorted by what the signed metadata says of them.
#[derive(Default)]
pub(crate) struct CheckedOffers {
    pub(crate) updates: Vec<VerifiedUpdate>,
    pub(crate) refusals: Vec<Refusal>,
    pub(crate) awaiting: Vec<AwaitingMetadata>,
}

fn check_offer<F: Fetch + ?Sized>(
    state: &mut TrustedState,
    fetch: &mut F,
    context: &CheckContext<'_>,
    offer: &Offer,
    installed: &HashMap<String, &InstalledPlugin>,
) -> Result<VerifiedUpdate, RefusalReason> {
    let id: PluginId = offer
        .id
        .parse()
        .map_err(|error| RefusalReason::Malformed(format!("id: {error}")))?;
    let version: Version = offer
        .version
        .parse()
        .map_err(|error| RefusalReason::Malformed(format!("version: {error}")))?;
    let current = installed
        .get(&id.to_string())
        .ok_or(RefusalReason::NotInstalled)?;
    // The API's target path must at least name what the offer names: an answer that points
    // one plugin's name at another plugin's package is a lie worth reporting, not repairing.
    let target_named = offer.package.target.parse::<TargetPath>().ok();
    if target_named
        .as_ref()
        .is_none_or(|path| path.plugin() != &id || path.version() != &version)
    {
        return Err(RefusalReason::WrongPlugin {
            offered: format!("{id} {version}"),
            target: offer.package.target.clone(),
        });
    }
    if context.channel == Channel::Stable && !version.pre.is_empty() {
        return Err(RefusalReason::PreRelease(version));
    }
    let installed_version = current.state.current.version.clone();
    check_newer(&installed_version, &version)?;
    let package = verified_package(
        state,
        fetch,
        context,
        InstallReason::Update,
        &id,
        &version,
        Some(current.state.current.sha256),
        Some((&offer.package, offer.patch.as_ref())),
    )?;
    Ok(VerifiedUpdate {
        installed_version,
        package,
    })
}

/// Refuses an update to `offered` unless it is newer than the `installed` version: an update
/// never goes back (going back is an explicit install of a version, or a rollback).
pub(crate) fn check_newer(installed: &Version, offered: &Version) -> Result<(), RefusalReason> {
    if offered <= installed {
        return Err(RefusalReason::NotNewer {
            installed: installed.clone(),
            offered: offered.clone(),
        });
    }
    Ok(())
}

/// Installed versions the signed metadata lists as blocked (with the API's reason when it
/// gave one). Every installed plugin is looked up, so a store cannot hide a revocation by
/// leaving it out of its answer.
pub(crate) fn confirmed_revocations<F: Fetch + ?Sized>(
    state: &mut TrustedState,
    fetch: &mut F,
    context: &CheckContext<'_>,
    api_revocations: &[serde_json::Value],
    installed: &[InstalledPlugin],
) -> Result<Vec<Revocation>, VerificationError> {
    let reasons: Vec<ApiRevocation> = api_revocations
        .iter()
        .filter_map(|raw| serde_json::from_value(raw.clone()).ok())
        .collect();
    let mut revoked = Vec::new();
    for plugin in installed {
        let current = &plugin.state.current;
        let target = match state.target_info(fetch, &plugin.id, &current.version, context.now) {
            Ok(target) => target,
            // A version the store never listed (or no longer lists) is not a revocation.
            Err(VerificationError::UnknownTarget { .. }) => continue,
            Err(error) => return Err(error),
        };
        if target.state() != Some(VersionState::Blocked) || target.sha256() != current.sha256 {
            continue;
        }
        let api = reasons.iter().find(|revocation| {
            revocation.id == plugin.id.to_string()
                && revocation.version.parse::<Version>().ok().as_ref() == Some(&current.version)
        });
        revoked.push(Revocation {
            id: plugin.id.clone(),
            version: current.version.clone(),
            sha256: current.sha256,
            reason: api.and_then(|revocation| revocation.reason.clone()),
            detail: api.and_then(|revocation| revocation.detail.clone()),
        });
    }
    Ok(revoked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offered_url_may_not_be_less_private_than_the_store() {
        assert!(is_as_private_as(
            "https://cdn.example/b",
            "https://store.example"
        ));
        assert!(is_as_private_as(
            "HTTPS://cdn.example/b",
            "https://store.example"
        ));
        assert!(is_as_private_as(
            "https://cdn.example/b",
            "http://127.0.0.1:8080"
        ));
        assert!(is_as_private_as(
            "http://127.0.0.1:9/b",
            "http://127.0.0.1:8080"
        ));
        assert!(!is_as_private_as(
            "http://cdn.example/b",
            "https://store.example"
        ));
        assert!(!is_as_private_as(
            "HTTP://cdn.example/b",
            "https://store.example"
        ));
        assert!(!is_as_private_as(
            "ftp://cdn.example/b",
            "http://store.example"
        ));
        assert!(!is_as_private_as(
            "/blobs/sha256/00",
            "http://store.example"
        ));
    }

    #[test]
    fn a_plain_http_offer_under_an_https_store_falls_back_to_the_store() {
        let host = HostApp {
            app_id: "org.example.editor".to_owned(),
            version: Version::new(1, 0, 0),
            platform: Target::Any,
        };
        let signed = Sha256::of(b"package");
        let context = CheckContext {
            host: &host,
            channel: Channel::Stable,
            base_url: "https://store.example",
            now: UnixTime::now(),
        };
        let offered = |url: &str| OfferedBlob {
            target: String::new(),
            url: url.to_owned(),
            sha256: signed.to_hex(),
        };
        assert_eq!(
            context.url_for(Some(&offered("http://cdn.example/p")), signed),
            format!("https://store.example/blobs/sha256/{}", signed.to_hex())
        );
        assert_eq!(
            context.url_for(Some(&offered("https://cdn.example/p")), signed),
            "https://cdn.example/p"
        );
    }
}
