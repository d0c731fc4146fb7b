//! The update check: what a host should install next, and what it must stop running.
//!
//! The answer is a hint that saves the host from walking the signed metadata for every
//! installed plugin; the host verifies every offer against the TUF metadata before it installs
//! anything (docs/src/host-integration.md). Each check reads only the host's installed plugins
//! from the in-memory [`Catalogue`](crate::catalogue::Catalogue).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse as _, Response};
use plugstore_format::digest::PackageDigest;
use plugstore_format::manifest::{PluginId, Target, check_id_part};
use semver::Version;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::auth::Caller;
use crate::catalogue::{
    CacheView, Cached, FastHash, HostContext, OfferedPatch, OfferedVersion, PluginOffers,
    needs_json_escaping,
};
use crate::check_request::{plain_release, read_usual_check};
use crate::error::{ApiError, ApiResult, Problem};
use crate::releases::ReleaseState;

/// Most installed plugins one check may list.
pub const MAX_INSTALLED: usize = 1000;

/// Shortest and longest install id.
const INSTALL_ID_LEN: std::ops::RangeInclusive<usize> = 8..=128;

/// The host application asking.
#[derive(Debug, PartialEq, Deserialize, ToSchema)]
pub struct HostApp<'a> {
    /// The host application's id (reverse-DNS style), recorded for operators.
    #[serde(borrow)]
    pub app_id: Cow<'a, str>,
    /// The host application's semver version; matched against each plugin's host range.
    #[serde(borrow)]
    pub version: Cow<'a, str>,
    /// The platform, as in plugin manifests (`linux-x86_64`, `windows-x86_64`, …).
    #[serde(borrow)]
    pub platform: Cow<'a, str>,
}

/// One installed plugin.
#[derive(Debug, PartialEq, Deserialize, ToSchema)]
pub struct InstalledPlugin<'a> {
    /// `publisher/name`.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// The installed version.
    #[serde(borrow)]
    pub version: Cow<'a, str>,
    /// SHA-256 of the installed package (bare hex or `sha256:` prefixed).
    #[serde(borrow)]
    pub sha256: Cow<'a, str>,
}

/// `POST /api/v1/updates/check`. Read without copying its strings: a check lists dozens of
/// plugins and is the store's hottest request.
#[derive(Debug, PartialEq, Deserialize, ToSchema)]
pub struct UpdateCheckRequest<'a> {
    /// Who asks.
    #[serde(borrow)]
    pub host: HostApp<'a>,
    /// `stable` (default) or `beta` (also offers pre-release versions).
    #[serde(default, borrow)]
    pub channel: Option<Cow<'a, str>>,
    /// A random id the host keeps for its installation, for staged rollouts
    /// (8–128 characters of `A-Z a-z 0-9 . _ -`).
    #[serde(borrow)]
    pub install_id: Cow<'a, str>,
    /// What is installed.
    #[serde(borrow)]
    pub installed: Vec<InstalledPlugin<'a>>,
}

/// A file to download, with its signed name.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DownloadTarget {
    /// The TUF target name, to look up in the signed metadata.
    pub target: String,
    /// Where to download it (immutable, content-addressed).
    pub url: String,
    /// Its SHA-256, bare hex.
    pub sha256: String,
    /// Its length in bytes.
    pub length: u64,
}

/// A delta patch from the installed package.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchDownload {
    /// The TUF target name.
    pub target: String,
    /// Where to download it.
    pub url: String,
    /// Its SHA-256, bare hex.
    pub sha256: String,
    /// Its length in bytes.
    pub length: u64,
    /// The package it applies to (the installed one), bare hex.
    pub from_sha256: String,
}

/// An update for one installed plugin.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OfferedUpdate {
    /// `publisher/name`.
    pub id: String,
    /// The version the host has.
    pub installed_version: String,
    /// The version to install.
    pub version: String,
    /// The version of the snapshot whose metadata signs this offer. A host whose verified
    /// snapshot is older has not seen that metadata yet (a CDN may keep the timestamp for its
    /// `max-age`); the offer is then not yet confirmable, rather than false.
    pub signed_in_snapshot: u64,
    /// The full package.
    pub package: DownloadTarget,
    /// A smaller patch from the installed package, when the store has one.
    pub patch: Option<PatchDownload>,
}

/// An installed version the host must stop running.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokedInstall {
    /// `publisher/name`.
    pub id: String,
    /// The installed version.
    pub version: String,
    /// Its package SHA-256, bare hex.
    pub sha256: String,
    /// `version-blocked`, `plugin-blocked` or `certificate-revoked`.
    pub reason: String,
    /// The moderator's reason, when given.
    pub detail: Option<String>,
}

/// The answer of an update check. The handler renders it from text the catalogue prepared
/// (see [`crate::catalogue::OfferedVersion`]); the API tests read every answer back into
/// this type, so the two cannot drift apart.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCheckResponse {
    /// One entry per installed plugin that has an eligible newer version.
    pub updates: Vec<OfferedUpdate>,
    /// Installed versions that were revoked.
    pub revocations: Vec<RevokedInstall>,
    /// Base URL of the signed TUF metadata every offer must be verified against.
    pub metadata_url: String,
}

/// One installed plugin, checked.
struct Installed<'a> {
    id: &'a str,
    version: Version,
    version_text: &'a str,
    sha256: PackageDigest,
    sha256_text: &'a str,
}

/// What a request means once checked.
struct ParsedCheck<'a> {
    host_version: Version,
    platform: Target,
    beta: bool,
    installed: Vec<Installed<'a>>,
}

fn parse_check<'a>(request: &'a UpdateCheckRequest<'a>) -> ApiResult<ParsedCheck<'a>> {
    let host_version = Version::parse(request.host.version.trim()).map_err(|e| {
        ApiError::invalid(format!(
            "host.version `{}` is not a semver version: {e}",
            request.host.version
        ))
    })?;
    let platform: Target = request
        .host
        .platform
        .parse()
        .map_err(|e| ApiError::invalid(format!("host.platform: {e}")))?;
    if request.host.app_id.is_empty() || request.host.app_id.len() > 200 {
        return Err(ApiError::invalid("host.app_id must be 1 to 200 characters"));
    }
    let beta = match request.channel.as_deref().unwrap_or("stable") {
        "stable" => false,
        "beta" => true,
        other => {
            return Err(ApiError::invalid(format!(
                "channel `{other}` is not known; use `stable` or `beta`"
            )));
        }
    };
    let id_ok = INSTALL_ID_LEN.contains(&request.install_id.len())
        && request
            .install_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !id_ok {
        return Err(ApiError::invalid(
            "install_id must be 8 to 128 characters of A-Z a-z 0-9 . _ -",
        ));
    }
    if request.installed.len() > MAX_INSTALLED {
        return Err(ApiError::invalid(format!(
            "installed lists {} plugins; at most {MAX_INSTALLED} per check",
            request.installed.len()
        )));
    }
    let mut seen = HashSet::with_capacity_and_hasher(request.installed.len(), FastHash::default());
    let mut installed = Vec::with_capacity(request.installed.len());
    for (i, plugin) in request.installed.iter().enumerate() {
        let id: &str = &plugin.id;
        // Byte by byte, not `split_once`: ids are short, and the usual case is kept free of
        // `Result`s carrying an `ApiError`, which the loop would otherwise copy around.
        let Some(slash) = id.bytes().position(|byte| byte == b'/') else {
            return Err(ApiError::invalid(format!(
                "installed[{i}].id `{id}` is not `publisher/name`"
            )));
        };
        let (publisher, name) = (&id[..slash], &id[slash + 1..]);
        if let Err(e) = check_id_part(publisher).and_then(|()| check_id_part(name)) {
            return Err(ApiError::invalid(format!("installed[{i}].id: {e}")));
        }
        if !seen.insert(id) {
            return Err(ApiError::invalid(format!(
                "installed[{i}]: `{id}` is listed twice"
            )));
        }
        let version = match plain_release(&plugin.version) {
            Some(version) => version,
            None => Version::parse(&plugin.version).map_err(|e| {
                ApiError::invalid(format!(
                    "installed[{i}].version `{}` is not semver: {e}",
                    plugin.version
                ))
            })?,
        };
        let sha256_text = plugin
            .sha256
            .strip_prefix("sha256:")
            .unwrap_or(&plugin.sha256);
        let Ok(sha256) = sha256_text.parse::<PackageDigest>() else {
            return Err(ApiError::invalid(format!(
                "installed[{i}].sha256 must be 64 lowercase hex digits"
            )));
        };
        installed.push(Installed {
            id,
            version,
            version_text: &plugin.version,
            sha256,
            sha256_text,
        });
    }
    Ok(ParsedCheck {
        host_version,
        platform,
        beta,
        installed,
    })
}

/// An update to offer for one installed plugin.
struct Offer<'a, 'c> {
    installed: &'a Installed<'c>,
    offers: &'a PluginOffers,
    newest: &'a OfferedVersion,
    patch: Option<&'a OfferedPatch>,
}

/// Renders the answer up to its `metadata_url`, or names the plugins neither `view` nor
/// `loaded` knows.
fn render_answer<'c>(
    view: &CacheView<'_>,
    loaded: &HashMap<&str, Option<Arc<PluginOffers>>, FastHash>,
    check: &ParsedCheck<'c>,
    host: &HostContext<'_>,
) -> Result<Vec<u8>, Vec<&'c str>> {
    let mut unknown = Vec::new();
    let plugins: Vec<(&Installed<'c>, &PluginOffers)> = check
        .installed
        .iter()
        .filter_map(|installed| {
            let offers = match view.get(installed.id) {
                Cached::Offers(offers) => Some(offers),
                Cached::Missing => None,
                Cached::Unknown => match loaded.get(installed.id) {
                    Some(offers) => offers.as_deref(),
                    None => {
                        unknown.push(installed.id);
                        None
                    }
                },
            };
            offers.map(|offers| (installed, offers))
        })
        .collect();
    if !unknown.is_empty() {
        return Err(unknown);
    }

    // What to offer is decided for every plugin before any answer is written: each decision
    // reads memory the caches rarely hold (the plugin, its versions, their patches), and
    // without 50 copies of prepared text in between, the processor overlaps those reads
    // across plugins.
    let mut revocations = Vec::new();
    let offers: Vec<Offer<'_, 'c>> = plugins
        .iter()
        .filter_map(|&(installed, offers)| {
            // Newest first: the versions newer than the installed one, then usually the
            // installed one itself, read only to see whether it was revoked.
            let mut newest = None;
            for offered in &offers.versions {
                match offered.version.cmp(&installed.version) {
                    Ordering::Greater => {
                        if newest.is_none()
                            && offers.signed_in_snapshot.is_some()
                            && offered.eligible_for(&offers.id, host)
                        {
                            newest = Some(offered);
                            if !offers.any_revoked {
                                break;
                            }
                        }
                    }
                    Ordering::Equal => {
                        if offered.digest == installed.sha256
                            && let ReleaseState::Revoked { revocation, detail } = &offered.state
                        {
                            revocations.push(RevokedInstall {
                                id: installed.id.to_owned(),
                                version: installed.version_text.to_owned(),
                                sha256: installed.sha256_text.to_owned(),
                                reason: revocation.code().to_owned(),
                                detail: detail.clone(),
                            });
                        }
                        break;
                    }
                    Ordering::Less => break,
                }
            }
            let newest = newest?;
            let patch = newest
                .patches
                .iter()
                .find(|patch| patch.from == installed.sha256 && patch.size < newest.size);
            Some(Offer {
                installed,
                offers,
                newest,
                patch,
            })
        })
        .collect();

    let mut out = Vec::with_capacity(64 + 800 * offers.len());
    out.extend_from_slice(b"{\"updates\":[");
    for (i, offer) in offers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let json = |span| offer.offers.json(span);
        // Written piece by piece, without looking for characters to escape: the id passed
        // the naming rules and the version semver's grammar, which allow none.
        let (id, version) = (offer.installed.id, offer.installed.version_text);
        debug_assert!(!needs_json_escaping(id) && !needs_json_escaping(version));
        for piece in [
            b"{\"id\":\"".as_slice(),
            id.as_bytes(),
            b"\",\"installed_version\":\"",
            version.as_bytes(),
            b"\",",
            // `"version":…,"signed_in_snapshot":…,"package":{…}`, rendered by the catalogue.
            json(offer.newest.version_and_package),
            b",\"patch\":",
            offer
                .patch
                .map_or(b"null".as_slice(), |patch| json(patch.json)),
            b"}",
        ] {
            out.extend_from_slice(piece);
        }
    }
    out.extend_from_slice(b"],\"revocations\":");
    // Serialising plain structs into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut out, &revocations);
    Ok(out)
}

/// Checks a host's installed plugins for updates and revocations.
#[utoipa::path(post, path = "/api/v1/updates/check", tag = "updates", request_body = UpdateCheckRequest,
    responses((status = 200, body = UpdateCheckResponse), (status = 422, body = Problem)))]
pub async fn check_updates(
    State(app): State<AppState>,
    _caller: Caller,
    body: Bytes,
) -> ApiResult<Response> {
    // The UTF-8 is validated once for the whole body, not string by string.
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::invalid(format!("the body is not UTF-8: {e}")))?;
    let request: UpdateCheckRequest<'_> = match read_usual_check(text) {
        Some(request) => request,
        // Anything unusual, including every mistake, is read (and explained) by serde_json.
        None => serde_json::from_str(text)
            .map_err(|e| ApiError::invalid(format!("the body is not an update check: {e}")))?,
    };
    let check = parse_check(&request)?;
    let host = HostContext {
        version: &check.host_version,
        platform: check.platform,
        beta: check.beta,
        install_id: &request.install_id,
    };
    // Plugins the cache does not know are loaded first (rarely any: a replica loads a plugin
    // once and the change feed keeps it current), so that the answer is rendered under one
    // read lock and without an `await`. Each name is loaded at most once, so this ends.
    let catalogue = &app.catalogue;
    let mut loaded: HashMap<&str, Option<Arc<PluginOffers>>, FastHash> = HashMap::default();
    let out = loop {
        let unknown = match render_answer(&catalogue.view(), &loaded, &check, &host) {
            Ok(mut out) => {
                out.extend_from_slice(catalogue.answer_tail().as_bytes());
                break out;
            }
            Err(unknown) => unknown,
        };
        let ids = unknown
            .iter()
            .map(|id| {
                let (publisher, name) = id.split_once('/').unwrap_or_default();
                PluginId::new(publisher, name).map_err(|e| ApiError::invalid(e.to_string()))
            })
            .collect::<ApiResult<Vec<_>>>()?;
        let offers = catalogue
            .plugins(&app.db, &ids)
            .await
            .map_err(ApiError::internal)?;
        loaded.extend(unknown.into_iter().zip(offers));
    };
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        out,
    )
        .into_response())
}
