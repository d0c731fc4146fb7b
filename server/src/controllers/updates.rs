//! The update check: what a host should install next, and what it must stop running.
//!
//! The answer is a hint that saves the host from walking the signed metadata for every
//! installed plugin; the host verifies every offer against the TUF metadata before it installs
//! anything (docs/src/host-integration.md). Each check reads only the host's installed plugins
//! from the in-memory [`Catalogue`](crate::catalogue::Catalogue).

use std::collections::HashSet;

use axum::Json;
use axum::extract::State;
use plugstore_format::digest::PackageDigest;
use plugstore_format::manifest::{PluginId, Target};
use plugstore_tuf::layout::TargetPath;
use semver::Version;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::auth::Caller;
use crate::catalogue::HostContext;
use crate::error::{ApiError, ApiResult, Problem};
use crate::releases::ReleaseState;

/// Most installed plugins one check may list.
pub const MAX_INSTALLED: usize = 1000;

/// Shortest and longest install id.
const INSTALL_ID_LEN: std::ops::RangeInclusive<usize> = 8..=128;

/// The host application asking.
#[derive(Debug, Deserialize, ToSchema)]
pub struct HostApp {
    /// The host application's id (reverse-DNS style), recorded for operators.
    pub app_id: String,
    /// The host application's semver version; matched against each plugin's host range.
    pub version: String,
    /// The platform, as in plugin manifests (`linux-x86_64`, `windows-x86_64`, …).
    pub platform: String,
}

/// One installed plugin.
#[derive(Debug, Deserialize, ToSchema)]
pub struct InstalledPlugin {
    /// `publisher/name`.
    pub id: String,
    /// The installed version.
    pub version: String,
    /// SHA-256 of the installed package (bare hex or `sha256:` prefixed).
    pub sha256: String,
}

/// `POST /api/v1/updates/check`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateCheckRequest {
    /// Who asks.
    pub host: HostApp,
    /// `stable` (default) or `beta` (also offers pre-release versions).
    #[serde(default)]
    pub channel: Option<String>,
    /// A random id the host keeps for its installation, for staged rollouts
    /// (8–128 characters of `A-Z a-z 0-9 . _ -`).
    pub install_id: String,
    /// What is installed.
    pub installed: Vec<InstalledPlugin>,
}

/// A file to download, with its signed name.
#[derive(Debug, Serialize, ToSchema)]
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
#[derive(Debug, Serialize, ToSchema)]
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
#[derive(Debug, Serialize, ToSchema)]
pub struct OfferedUpdate {
    /// `publisher/name`.
    pub id: String,
    /// The version the host has.
    pub installed_version: String,
    /// The version to install.
    pub version: String,
    /// The full package.
    pub package: DownloadTarget,
    /// A smaller patch from the installed package, when the store has one.
    pub patch: Option<PatchDownload>,
}

/// An installed version the host must stop running.
#[derive(Debug, Serialize, ToSchema)]
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

/// The answer of an update check.
#[derive(Debug, Serialize, ToSchema)]
pub struct UpdateCheckResponse {
    /// One entry per installed plugin that has an eligible newer version.
    pub updates: Vec<OfferedUpdate>,
    /// Installed versions that were revoked.
    pub revocations: Vec<RevokedInstall>,
    /// Base URL of the signed TUF metadata every offer must be verified against.
    pub metadata_url: String,
}

/// What a request means once checked.
struct ParsedCheck {
    host_version: Version,
    platform: Target,
    beta: bool,
    installed: Vec<(PluginId, Version, PackageDigest)>,
}

fn parse_check(request: &UpdateCheckRequest) -> ApiResult<ParsedCheck> {
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
    let mut seen = HashSet::with_capacity(request.installed.len());
    let mut installed = Vec::with_capacity(request.installed.len());
    for (i, plugin) in request.installed.iter().enumerate() {
        let (publisher, name) = plugin.id.split_once('/').ok_or_else(|| {
            ApiError::invalid(format!(
                "installed[{i}].id `{}` is not `publisher/name`",
                plugin.id
            ))
        })?;
        let id = PluginId::new(publisher, name)
            .map_err(|e| ApiError::invalid(format!("installed[{i}].id: {e}")))?;
        if !seen.insert(id.clone()) {
            return Err(ApiError::invalid(format!(
                "installed[{i}]: `{id}` is listed twice"
            )));
        }
        let version = Version::parse(&plugin.version).map_err(|e| {
            ApiError::invalid(format!(
                "installed[{i}].version `{}` is not semver: {e}",
                plugin.version
            ))
        })?;
        let digest: PackageDigest = plugin.sha256.parse().map_err(|_| {
            ApiError::invalid(format!(
                "installed[{i}].sha256 must be 64 lowercase hex digits"
            ))
        })?;
        installed.push((id, version, digest));
    }
    Ok(ParsedCheck {
        host_version,
        platform,
        beta,
        installed,
    })
}

/// Checks a host's installed plugins for updates and revocations.
#[utoipa::path(post, path = "/api/v1/updates/check", tag = "updates", request_body = UpdateCheckRequest,
    responses((status = 200, body = UpdateCheckResponse), (status = 422, body = Problem)))]
pub async fn check_updates(
    State(app): State<AppState>,
    _caller: Caller,
    Json(request): Json<UpdateCheckRequest>,
) -> ApiResult<Json<UpdateCheckResponse>> {
    let check = parse_check(&request)?;
    let host = HostContext {
        version: &check.host_version,
        platform: check.platform,
        beta: check.beta,
        install_id: &request.install_id,
    };
    let download_base = app.download_base();
    let blob_url =
        |digest: &PackageDigest| format!("{download_base}/blobs/sha256/{}", digest.to_hex());
    let mut updates = Vec::new();
    let mut revocations = Vec::new();
    for (id, installed_version, installed_digest) in &check.installed {
        let Some(offers) = app
            .catalogue
            .plugin(&app.db, id)
            .await
            .map_err(ApiError::internal)?
        else {
            continue;
        };
        let installed = offers
            .versions
            .iter()
            .find(|offered| offered.version == *installed_version);
        if let Some(installed) = installed
            && installed.digest == *installed_digest
            && let ReleaseState::Revoked { revocation, detail } = &installed.state
        {
            revocations.push(RevokedInstall {
                id: id.to_string(),
                version: installed_version.to_string(),
                sha256: installed_digest.to_hex(),
                reason: revocation.code().to_owned(),
                detail: detail.clone(),
            });
        }
        let Some(newest) = offers
            .versions
            .iter()
            .take_while(|offered| offered.version > *installed_version)
            .find(|offered| offered.eligible_for(id, &host))
        else {
            continue;
        };
        let package_target = TargetPath::package(id.clone(), newest.version.clone());
        let patch = newest
            .patches
            .iter()
            .find(|patch| patch.from == *installed_digest && patch.size < newest.size)
            .map(|patch| PatchDownload {
                target: TargetPath::patch(id.clone(), newest.version.clone(), patch.from)
                    .to_string(),
                url: blob_url(&patch.digest),
                sha256: patch.digest.to_hex(),
                length: patch.size,
                from_sha256: patch.from.to_hex(),
            });
        updates.push(OfferedUpdate {
            id: id.to_string(),
            installed_version: installed_version.to_string(),
            version: newest.version.to_string(),
            package: DownloadTarget {
                target: package_target.to_string(),
                url: blob_url(&newest.digest),
                sha256: newest.digest.to_hex(),
                length: newest.size,
            },
            patch,
        });
    }
    Ok(Json(UpdateCheckResponse {
        updates,
        revocations,
        metadata_url: format!("{download_base}/tuf/"),
    }))
}
