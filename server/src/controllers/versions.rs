//! Publishing versions (signed, streaming uploads), yanking and unyanking them.

use std::collections::HashSet;
use std::io;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use futures_util::{StreamExt, TryStreamExt};
use plugstore_format::certs::{
    CertFingerprint, IssuerSerial, UnixTime, VerifiedSigner, fingerprint, issuer_serial,
};
use plugstore_format::package::{PackageContents, read_package};
use plugstore_format::signing::{SignatureEnvelope, SigningPayload, verify_package_signature};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::audit;
use super::certificates::SignerRecord;
use super::plugins::{VersionPath, VersionView, version_view};
use crate::app::AppState;
use crate::auth::{Caller, Credential, MemberRole, Principal, Scope};
use crate::blobs::{BlobDigest, BlobError};
use crate::config::ScanPolicy;
use crate::error::{ApiError, ApiResult, Problem, ProblemKind};
use crate::upload::ValidatingReader;
use crate::{blob_gc, db, names};

/// Media type of an upload: a 4-byte big-endian length, that many bytes of signature envelope
/// JSON, then the package bytes.
pub const UPLOAD_MEDIA_TYPE: &str = "application/vnd.plugstore.upload.v1";

/// Largest signature envelope accepted in an upload.
pub const MAX_ENVELOPE_BYTES: usize = plugstore_format::signing::MAX_ENVELOPE_SIZE;

/// The outcome of a publish.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublishedVersion {
    /// `publisher/name`.
    pub plugin: String,
    /// The version as stored.
    #[serde(flatten)]
    pub version: VersionView,
    /// Where to read it back.
    pub url: String,
}

/// Why a version is yanked or unyanked.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct YankRequest {
    /// Shown to users of the version.
    pub reason: String,
}

/// What the validator hands the handler once an upload is accepted.
struct Accepted {
    contents: PackageContents,
    signer: VerifiedSigner,
    envelope_json: String,
    /// The version already exists with these bytes: this upload is a retry.
    existing: bool,
}

fn upload_problem(kind: ProblemKind, code: &str, detail: impl std::fmt::Display) -> ApiError {
    ApiError::new(kind, detail.to_string()).with_code(code)
}

/// Publishes a version: a streaming upload of the package with its developer signature.
///
/// The body is `application/vnd.plugstore.upload.v1`: a 4-byte big-endian length, the
/// signature envelope (JSON), then the package. Nothing is stored unless the package, the
/// manifest, the certificate chain and the signature all check out. Retrying the same upload
/// returns the existing version; different bytes for an existing version are refused.
#[utoipa::path(put, path = "/api/v1/plugins/{publisher}/{name}/versions/{version}", tag = "plugins", security(("bearer" = [])),
    params(VersionPath),
    request_body(content = Vec<u8>, content_type = "application/vnd.plugstore.upload.v1", description = "u32 BE envelope length, envelope JSON, package bytes"),
    responses((status = 201, body = PublishedVersion), (status = 200, body = PublishedVersion, description = "the same upload was already published"),
              (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem),
              (status = 413, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn publish_version(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<VersionPath>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<PublishedVersion>)> {
    let (me, publisher) = caller
        .require_publisher(
            &app,
            &path.publisher,
            MemberRole::Maintainer,
            Scope::Publish,
        )
        .await?;
    require_plugin_scope(&me, &path.name)?;
    app.limits.publish_by_user.check_key(&me.user_id)?;
    app.limits.publish_by_publisher.check_key(&publisher.id)?;
    names::validate_name("plugin name", &path.name)?;
    refuse_blocked_plugin(&app.db.pool, publisher.id, &path.name).await?;
    let version = semver::Version::parse(&path.version)
        .map_err(|e| ApiError::invalid(format!("version `{}` is not semver: {e}", path.version)))?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with(UPLOAD_MEDIA_TYPE) {
        return Err(ApiError::invalid(format!(
            "send the upload as {UPLOAD_MEDIA_TYPE} (the plugstore CLI does this)"
        )));
    }
    let max = app.settings.publish.max_package_bytes;
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > max + 4 + MAX_ENVELOPE_BYTES as u64) {
        return Err(too_large(max));
    }

    let mut stream = body.into_data_stream().map_err(io::Error::other);
    let (envelope_json, rest) = read_envelope(&mut stream).await?;
    let envelope = SignatureEnvelope::from_json(&envelope_json)
        .map_err(|e| upload_problem(ProblemKind::InvalidSignature, "envelope", e))?;
    let body = futures_util::stream::iter(rest.map(Ok)).chain(stream);

    let plugin_id = format!("{}/{}", publisher.name, path.name);
    let verdict_app = app.clone();
    let verdict_id = plugin_id.clone();
    let verdict_version = version.clone();
    let limits = app.package_limits();
    let (validator_tx, validator_rx) = tokio::sync::oneshot::channel();
    let (mut reader, chunks, slot) = ValidatingReader::new(body, move || {
        Box::pin(async move {
            let contents = validator_rx.await.map_err(ApiError::internal)??;
            decide(
                &verdict_app,
                contents,
                &verdict_id,
                &verdict_version,
                envelope,
            )
            .await
        })
    });
    let validator = tokio::task::spawn_blocking(move || {
        let outcome = read_package(chunks, &limits)
            .map_err(|e| upload_problem(ProblemKind::InvalidPackage, &variant_code(&e), e));
        let _ = validator_tx.send(outcome);
    });

    let stored = app.blobs.put(&mut reader, None, Some(max)).await;
    let verdict = slot.lock().ok().and_then(|mut s| s.take());
    drop(reader);
    let _ = validator.await;
    let accepted = match (stored, verdict) {
        (Ok(_), Some(Ok(accepted))) => accepted,
        (_, Some(Err(refusal))) => return Err(refusal),
        (Err(BlobError::TooLarge { .. }), _) => return Err(too_large(max)),
        (Err(BlobError::Io(e)), None) => {
            return Err(upload_problem(
                ProblemKind::UploadTruncated,
                "truncated",
                format!("the upload ended early ({e}); send it again"),
            ));
        }
        (Err(e), _) => {
            app.metrics.blob_error(app.blobs.backend_name(), "put");
            return Err(ApiError::unavailable(
                "the blob store is not reachable",
                anyhow::anyhow!(e),
            ));
        }
        (Ok(_), None) => {
            return Err(ApiError::internal(anyhow::anyhow!(
                "upload finished without a verdict"
            )));
        }
    };

    if accepted.existing {
        let view = find_version(&app, &publisher.name, &path.name, &version.to_string()).await?;
        return Ok((StatusCode::OK, Json(published(&app, &plugin_id, view))));
    }
    let state = match app.settings.scan.policy {
        ScanPolicy::Publish => "published",
        ScanPolicy::Review => "pending_review",
        ScanPolicy::Scan => "scanning",
    };
    insert_version(
        &app,
        &me,
        publisher.id,
        &path.name,
        &version,
        state,
        &accepted,
    )
    .await?;
    let view = find_version(&app, &publisher.name, &path.name, &version.to_string()).await?;
    if view.package_digest != accepted.contents.digest.to_string() {
        // Lost a race with a different upload of the same version.
        return Err(version_exists(&plugin_id, &version));
    }
    Ok((StatusCode::CREATED, Json(published(&app, &plugin_id, view))))
}

fn published(app: &AppState, plugin_id: &str, version: VersionView) -> PublishedVersion {
    let url = format!(
        "{}/api/v1/plugins/{plugin_id}/versions/{}",
        app.settings.http.public_url, version.version
    );
    PublishedVersion {
        plugin: plugin_id.to_owned(),
        version,
        url,
    }
}

fn too_large(max: u64) -> ApiError {
    upload_problem(
        ProblemKind::PayloadTooLarge,
        "too-large",
        format!("packages may be at most {max} bytes"),
    )
}

fn version_exists(plugin_id: &str, version: &semver::Version) -> ApiError {
    upload_problem(
        ProblemKind::VersionExists,
        "version-exists",
        format!(
            "{plugin_id} {version} already exists with different contents; version numbers are never reused, publish a new version"
        ),
    )
}

/// A plugin under the moderators' kill switch accepts no new versions.
async fn refuse_blocked_plugin<'e, E>(executor: E, publisher_id: i64, name: &str) -> ApiResult<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let blocked: Option<Option<String>> = sqlx::query_scalar(
        "SELECT blocked_reason FROM plugins WHERE publisher_id = $1 AND name = $2 AND blocked_at IS NOT NULL",
    )
    .bind(publisher_id)
    .bind(name)
    .fetch_optional(executor)
    .await?;
    match blocked {
        Some(reason) => Err(ApiError::forbidden(format!(
            "plugin `{name}` is blocked by the store's moderators ({}); it accepts no new versions",
            reason.as_deref().unwrap_or("no reason given")
        ))
        .with_code("plugin-blocked")),
        None => Ok(()),
    }
}

/// A token limited to one plugin may publish only that plugin.
fn require_plugin_scope(me: &Principal, plugin: &str) -> ApiResult<()> {
    if let Credential::ApiToken {
        plugin_name: Some(limit),
        ..
    } = &me.credential
        && limit != plugin
    {
        return Err(ApiError::forbidden(format!(
            "this API token is limited to plugin `{limit}`"
        )));
    }
    Ok(())
}

/// Reads the length-prefixed envelope; returns it and the first package bytes already read.
async fn read_envelope<S>(stream: &mut S) -> ApiResult<(Vec<u8>, Option<bytes::Bytes>)>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, io::Error>> + Unpin,
{
    let mut head = Vec::new();
    let mut wanted: Option<usize> = None;
    loop {
        if wanted.is_none() && head.len() >= 4 {
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
            if len == 0 || len > MAX_ENVELOPE_BYTES {
                return Err(upload_problem(
                    ProblemKind::InvalidSignature,
                    "envelope",
                    format!(
                        "the signature envelope must be 1 to {MAX_ENVELOPE_BYTES} bytes, not {len}"
                    ),
                ));
            }
            wanted = Some(4 + len);
        }
        if let Some(total) = wanted
            && head.len() >= total
        {
            let rest = head.split_off(total);
            head.drain(..4);
            let rest = (!rest.is_empty()).then(|| bytes::Bytes::from(rest));
            return Ok((head, rest));
        }
        match stream.next().await {
            Some(Ok(chunk)) => head.extend_from_slice(&chunk),
            Some(Err(e)) => {
                return Err(upload_problem(
                    ProblemKind::UploadTruncated,
                    "truncated",
                    format!("the upload ended early ({e})"),
                ));
            }
            None => {
                return Err(upload_problem(
                    ProblemKind::UploadTruncated,
                    "truncated",
                    "the upload ended before the package began",
                ));
            }
        }
    }
}

/// The checks that need the whole package: manifest against URL, signature and certificate
/// chain, and the version's history. Runs before the blob becomes visible.
async fn decide(
    app: &AppState,
    contents: PackageContents,
    plugin_id: &str,
    version: &semver::Version,
    envelope: SignatureEnvelope,
) -> ApiResult<Accepted> {
    let manifest = &contents.manifest;
    if manifest.id().to_string() != plugin_id {
        return Err(upload_problem(
            ProblemKind::ManifestMismatch,
            "id-mismatch",
            format!(
                "plugin.toml says id `{}` but the upload is for `{plugin_id}`",
                manifest.id()
            ),
        ));
    }
    if manifest.version() != version {
        return Err(upload_problem(
            ProblemKind::ManifestMismatch,
            "version-mismatch",
            format!(
                "plugin.toml says version {} but the upload is for {version}",
                manifest.version()
            ),
        ));
    }
    let payload = SigningPayload::new(plugin_id, &version.to_string(), contents.digest)
        .map_err(|e| upload_problem(ProblemKind::InvalidInput, "payload", e))?;
    let revoked = revoked_among(app, &envelope).await?;
    let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(db::now().max(0) as u64));
    let signer = verify_package_signature(
        &envelope,
        &payload,
        &app.trust.anchors,
        &app.trust.policy,
        now,
        &revoked,
    )
    .map_err(signature_problem)?;
    let existing: Option<String> = sqlx::query_scalar(
        "SELECT v.package_digest FROM plugin_versions v JOIN plugins p ON p.id = v.plugin_id JOIN publishers pb ON pb.id = p.publisher_id \
         WHERE pb.name = $1 AND p.name = $2 AND v.version = $3",
    )
    .bind(manifest.id().publisher())
    .bind(manifest.id().name())
    .bind(version.to_string())
    .fetch_optional(&app.db.pool)
    .await?;
    let existing = match existing {
        Some(digest) if digest == contents.digest.to_hex() => true,
        Some(_) => return Err(version_exists(plugin_id, version)),
        None => false,
    };
    let envelope_json = envelope.to_json().map_err(ApiError::internal)?;
    Ok(Accepted {
        contents,
        signer,
        envelope_json,
        existing,
    })
}

/// The revoked certificates among those that can take part in verifying `envelope`: its
/// chain and the trusted roots. Reading only those keeps an upload's cost independent of how
/// many certificates the store has ever revoked.
///
/// A certificate in the chain counts as revoked when its fingerprint is, and also when a
/// revoked certificate has its issuer and serial: another encoding of the same certificate
/// (an ECDSA signature re-encoded as (r, n − s)) has another fingerprint and is just as
/// valid ([`IssuerSerial`]).
async fn revoked_among(
    app: &AppState,
    envelope: &SignatureEnvelope,
) -> ApiResult<HashSet<CertFingerprint>> {
    let chain: Vec<(CertFingerprint, Option<IssuerSerial>)> = envelope
        .certificate_chain
        .iter()
        .map(|der| (fingerprint(der), issuer_serial(der)))
        .collect();
    let candidates: Vec<CertFingerprint> = chain
        .iter()
        .map(|(fingerprint, _)| *fingerprint)
        .chain(
            app.trust
                .anchors
                .certificates()
                .iter()
                .map(|root| root.fingerprint),
        )
        .collect();
    // Certificates are named by bare hex SHA-256 throughout the database.
    let hex: Vec<String> = candidates
        .iter()
        .map(|candidate| hex::encode(candidate.as_bytes()))
        .collect();
    let revoked = db::strings_among(
        &app.db.pool,
        "SELECT fingerprint FROM certificates WHERE revoked_at IS NOT NULL AND fingerprint IN ({list})",
        &hex,
    )
    .await?;
    let serials: Vec<String> = chain
        .iter()
        .filter_map(|(_, identity)| identity.as_ref())
        .map(|identity| identity.serial_hex.clone())
        .collect();
    // A serial is hex, so the first space ends it.
    let revoked_identities = db::strings_among(
        &app.db.pool,
        "SELECT serial || ' ' || issuer FROM certificates WHERE revoked_at IS NOT NULL AND serial IN ({list})",
        &serials,
    )
    .await?;
    let identity_revoked = |identity: &Option<IssuerSerial>| {
        identity.as_ref().is_some_and(|identity| {
            revoked_identities.contains(&format!("{} {}", identity.serial_hex, identity.issuer))
        })
    };
    // The answers can only repeat candidates; keeping the candidates themselves leaves no
    // fingerprint to parse, and so none to drop.
    Ok(candidates
        .iter()
        .zip(&hex)
        .filter(|(_, hex)| revoked.contains(*hex))
        .map(|(candidate, _)| *candidate)
        .chain(
            chain
                .iter()
                .filter(|(_, identity)| identity_revoked(identity))
                .map(|(fingerprint, _)| *fingerprint),
        )
        .collect())
}

fn signature_problem(e: plugstore_format::signing::SignatureError) -> ApiError {
    use plugstore_format::signing::SignatureError as E;
    match &e {
        E::Signer(cert) => {
            upload_problem(ProblemKind::UntrustedCertificate, &variant_code(cert), &e)
        }
        _ => upload_problem(ProblemKind::InvalidSignature, &variant_code(&e), &e),
    }
}

/// A stable, kebab-case code from an error's variant name (`PathTraversal { .. }` →
/// `path-traversal`), so clients can tell refusals apart without parsing prose.
pub fn variant_code(error: &impl std::fmt::Debug) -> String {
    let debug = format!("{error:?}");
    let name: String = debug
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let mut code = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                code.push('-');
            }
            code.push(c.to_ascii_lowercase());
        } else {
            code.push(c);
        }
    }
    code
}

/// Writes the plugin (first version only), the version and an external signer certificate in
/// one transaction, after the blob is durable.
async fn insert_version(
    app: &AppState,
    me: &Principal,
    publisher_id: i64,
    name: &str,
    version: &semver::Version,
    state: &str,
    accepted: &Accepted,
) -> ApiResult<()> {
    let now = db::now();
    let manifest = &accepted.contents.manifest;
    let mut tx = app.db.pool.begin().await?;
    // The package is named from here on; an identical upload stored long ago and never named
    // could have been collected since `put` found it.
    let package = BlobDigest::from_bytes(*accepted.contents.digest.as_bytes());
    blob_gc::confirm_stored(&mut tx, app.db.engine, app.blobs.as_ref(), [&package]).await?;
    // The plugin's description comes from its versions once one is published (a trigger,
    // migration 0011): text nobody reviewed never shows.
    sqlx::query(
        "INSERT INTO plugins (publisher_id, name, description, created_at, updated_at) VALUES ($1, $2, '', $3, $3) \
         ON CONFLICT (publisher_id, name) DO UPDATE SET updated_at = excluded.updated_at",
    )
    .bind(publisher_id)
    .bind(name)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let plugin_id: i64 =
        sqlx::query_scalar("SELECT id FROM plugins WHERE publisher_id = $1 AND name = $2")
            .bind(publisher_id)
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
    // Checked again inside the transaction: the plugin may have been blocked mid-upload.
    refuse_blocked_plugin(&mut *tx, publisher_id, name).await?;
    let signer = &accepted.signer;
    // Certificates are named by bare hex SHA-256 throughout the database.
    let fingerprint = hex::encode(signer.leaf_fingerprint.as_bytes());
    super::certificates::record_signer(
        &mut tx,
        app.db.engine,
        publisher_id,
        SignerRecord {
            fingerprint: &fingerprint,
            serial_hex: &signer.serial_hex,
            subject: &signer.subject,
            issuer: &signer.issuer,
            not_before: signer.not_before,
            not_after: signer.not_after,
        },
        now,
    )
    .await?;
    let inserted = sqlx::query(
        "INSERT INTO plugin_versions (plugin_id, version, state, package_digest, package_size, created_at, manifest, signature, signer_fingerprint, published_by, state_changed_at, description) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $6, $11) ON CONFLICT (plugin_id, version) DO NOTHING",
    )
    .bind(plugin_id)
    .bind(version.to_string())
    .bind(state)
    .bind(accepted.contents.digest.to_hex())
    .bind(accepted.contents.length as i64)
    .bind(now)
    .bind(&accepted.contents.manifest_text)
    .bind(&accepted.envelope_json)
    .bind(&fingerprint)
    .bind(me.user_id)
    .bind(manifest.description())
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 1 && state == "scanning" {
        // Queued in the same transaction: a version never waits in `scanning` without a job.
        sqlx::query(
            "INSERT INTO scan_jobs (version_id, state, created_at, updated_at) \
             SELECT id, 'queued', $1, $1 FROM plugin_versions WHERE plugin_id = $2 AND version = $3",
        )
        .bind(now)
        .bind(plugin_id)
        .bind(version.to_string())
        .execute(&mut *tx)
        .await?;
    }
    if inserted.rows_affected() == 1 {
        let target = format!("version:{}/{name}@{version}", manifest.id().publisher());
        audit(&mut tx, Some(me.user_id), "version.upload", &target, None).await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn find_version(
    app: &AppState,
    publisher: &str,
    name: &str,
    version: &str,
) -> ApiResult<VersionView> {
    let row = sqlx::query(
        "SELECT v.id, v.version, v.state, v.state_reason, v.package_digest, v.package_size, v.created_at, \
         v.rollout_percent, v.rollout_paused FROM plugin_versions v \
         JOIN plugins p ON p.id = v.plugin_id JOIN publishers pb ON pb.id = p.publisher_id \
         WHERE pb.name = $1 AND p.name = $2 AND v.version = $3",
    )
    .bind(publisher)
    .bind(name)
    .bind(version)
    .fetch_optional(&app.db.pool)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no version {version} of `{publisher}/{name}`")))?;
    Ok(version_view(app, &row)?)
}

async fn change_state(
    app: &AppState,
    caller: &Caller,
    path: &VersionPath,
    from: &str,
    to: &str,
    reason: &str,
) -> ApiResult<Json<VersionView>> {
    let (me, _publisher) = caller
        .require_publisher(app, &path.publisher, MemberRole::Maintainer, Scope::Yank)
        .await?;
    require_plugin_scope(&me, &path.name)?;
    let reason = super::checked_reason(reason)?;
    let current = find_version(app, &path.publisher, &path.name, &path.version).await?;
    if current.state == to {
        return Ok(Json(current));
    }
    if current.state != from {
        return Err(ApiError::conflict(format!(
            "version {} is {}; only a {from} version can become {to}",
            current.version, current.state
        )));
    }
    let mut tx = app.db.pool.begin().await?;
    let changed = sqlx::query("UPDATE plugin_versions SET state = $1, state_reason = $2, state_changed_at = $3 WHERE id = $4 AND state = $5")
        .bind(to)
        .bind(reason)
        .bind(db::now())
        .bind(current.row_id)
        .bind(from)
        .execute(&mut *tx)
        .await?;
    if changed.rows_affected() == 1 {
        let action = if to == "yanked" {
            "version.yank"
        } else {
            "version.unyank"
        };
        let target = format!(
            "version:{}/{}@{}",
            path.publisher, path.name, current.version
        );
        audit(&mut tx, Some(me.user_id), action, &target, Some(reason)).await?;
    }
    tx.commit().await?;
    Ok(Json(
        find_version(app, &path.publisher, &path.name, &path.version).await?,
    ))
}

/// Yanks a published version: still downloadable by digest, never offered as an update.
#[utoipa::path(post, path = "/api/v1/plugins/{publisher}/{name}/versions/{version}/yank", tag = "plugins", security(("bearer" = [])),
    params(VersionPath), request_body = YankRequest,
    responses((status = 200, body = VersionView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn yank_version(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<VersionPath>,
    Json(body): Json<YankRequest>,
) -> ApiResult<Json<VersionView>> {
    change_state(&app, &caller, &path, "published", "yanked", &body.reason).await
}

/// Returns a yanked version to published.
#[utoipa::path(post, path = "/api/v1/plugins/{publisher}/{name}/versions/{version}/unyank", tag = "plugins", security(("bearer" = [])),
    params(VersionPath), request_body = YankRequest,
    responses((status = 200, body = VersionView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn unyank_version(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<VersionPath>,
    Json(body): Json<YankRequest>,
) -> ApiResult<Json<VersionView>> {
    change_state(&app, &caller, &path, "yanked", "published", &body.reason).await
}

/// A version's staged rollout.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct Rollout {
    /// Percentage of install ids offered the version (0–100; 100 is everyone).
    pub percent: u8,
    /// When true, the version is offered to nobody new, whatever the percentage.
    pub paused: bool,
}

/// Sets a published version's staged rollout: which share of hosts the update check offers it
/// to, or a pause. Hosts that installed it keep it; signed metadata lists it either way.
#[utoipa::path(put, path = "/api/v1/plugins/{publisher}/{name}/versions/{version}/rollout", tag = "updates", security(("bearer" = [])),
    params(VersionPath), request_body = Rollout,
    responses((status = 200, body = Rollout), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn set_rollout(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<VersionPath>,
    Json(body): Json<Rollout>,
) -> ApiResult<Json<Rollout>> {
    let (me, _publisher) = caller
        .require_publisher(
            &app,
            &path.publisher,
            MemberRole::Maintainer,
            Scope::Publish,
        )
        .await?;
    require_plugin_scope(&me, &path.name)?;
    if body.percent > 100 {
        return Err(ApiError::invalid(format!(
            "percent must be between 0 and 100, not {}",
            body.percent
        )));
    }
    let current = find_version(&app, &path.publisher, &path.name, &path.version).await?;
    let mut tx = app.db.pool.begin().await?;
    sqlx::query(
        "UPDATE plugin_versions SET rollout_percent = $1, rollout_paused = $2 WHERE id = $3",
    )
    .bind(i64::from(body.percent))
    .bind(i64::from(body.paused))
    .bind(current.row_id)
    .execute(&mut *tx)
    .await?;
    let target = format!(
        "version:{}/{}@{}",
        path.publisher, path.name, current.version
    );
    let detail = format!(
        "{}%{}",
        body.percent,
        if body.paused { ", paused" } else { "" }
    );
    audit(
        &mut tx,
        Some(me.user_id),
        "version.rollout",
        &target,
        Some(&detail),
    )
    .await?;
    tx.commit().await?;
    app.catalogue.wake();
    Ok(Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    #[expect(dead_code, reason = "only the Debug output is used")]
    enum Sample {
        PathTraversal { path: String },
        Expired,
    }

    #[test]
    fn variant_codes_are_kebab_case() {
        assert_eq!(
            variant_code(&Sample::PathTraversal { path: "x".into() }),
            "path-traversal"
        );
        assert_eq!(variant_code(&Sample::Expired), "expired");
    }
}
