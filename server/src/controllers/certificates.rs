//! The store's CA and publishers' code-signing certificates: issue from a CSR, list, revoke.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::{IntoParams, ToSchema};

use super::{Page, PageQuery, PublisherPath, audit, rfc3339};
use crate::app::AppState;
use crate::auth::{Caller, MemberRole, Scope};
use crate::ca::CaError;
use crate::db::{self, Engine};
use crate::error::{ApiError, ApiResult, Problem, ProblemKind};

/// A certificate signing request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateRequest {
    /// PKCS#10 CSR in PEM (`-----BEGIN CERTIFICATE REQUEST-----`).
    pub csr: String,
    /// Lifetime in days; at most the store's `signing.certificate_lifetime_days`.
    pub lifetime_days: Option<u32>,
}

/// A code-signing certificate known to the store.
#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateView {
    /// Row id (ordering key of lists).
    #[serde(skip)]
    pub row_id: i64,
    /// SHA-256 of the DER, hex: how certificates are named.
    pub fingerprint: String,
    /// Serial number, hex.
    pub serial: String,
    /// Subject.
    pub subject: String,
    /// Issuer.
    pub issuer: String,
    /// `store-ca` (issued here) or `external` (a trusted third-party CA).
    pub origin: String,
    /// Start of validity (RFC 3339).
    pub not_before: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
    /// When it was revoked (RFC 3339).
    pub revoked_at: Option<String>,
    /// Why it was revoked.
    pub revoked_reason: Option<String>,
}

/// A newly issued certificate.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedCertificateView {
    /// Metadata.
    #[serde(flatten)]
    pub certificate: CertificateView,
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// The certificate followed by the store's CA certificate, PEM: the chain to sign with.
    pub chain_pem: String,
}

/// Why a certificate is revoked.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// Shown to clients and in the audit log.
    pub reason: String,
}

/// `/publishers/{publisher}/certificates/{fingerprint}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CertificatePath {
    /// Publisher name.
    pub publisher: String,
    /// SHA-256 fingerprint of the certificate, hex.
    pub fingerprint: String,
}

const COLUMNS: &str = "id, fingerprint, serial, subject, issuer, origin, not_before, not_after, revoked_at, revoked_reason";

fn certificate_view(row: &sqlx::any::AnyRow) -> Result<CertificateView, sqlx::Error> {
    Ok(CertificateView {
        row_id: row.try_get("id")?,
        fingerprint: row.try_get("fingerprint")?,
        serial: row.try_get("serial")?,
        subject: row.try_get("subject")?,
        issuer: row.try_get("issuer")?,
        origin: row.try_get("origin")?,
        not_before: rfc3339(row.try_get("not_before")?),
        not_after: rfc3339(row.try_get("not_after")?),
        revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(rfc3339),
        revoked_reason: row.try_get("revoked_reason")?,
    })
}

/// The store's CA certificate, PEM: add it to `plugstore verify` or a host's trust store.
#[utoipa::path(get, path = "/ca.pem", tag = "certificates",
    responses((status = 200, description = "PEM certificate", content_type = "application/x-pem-file")))]
pub async fn ca_certificate(State(app): State<AppState>) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/x-pem-file"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        app.ca.certificate_pem().to_owned(),
    )
}

/// Issues a code-signing certificate bound to the publisher. Owners and maintainers.
#[utoipa::path(post, path = "/api/v1/publishers/{publisher}/certificates", tag = "certificates", security(("bearer" = [])),
    params(PublisherPath), request_body = CertificateRequest,
    responses((status = 201, body = IssuedCertificateView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn issue_certificate(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<PublisherPath>,
    Json(body): Json<CertificateRequest>,
) -> ApiResult<(StatusCode, Json<IssuedCertificateView>)> {
    let (me, publisher) = caller
        .require_publisher(
            &app,
            &path.publisher,
            MemberRole::Maintainer,
            Scope::ManagePublisher,
        )
        .await?;
    let max_days = app.settings.signing.certificate_lifetime_days;
    let days = body.lifetime_days.unwrap_or(max_days);
    if days == 0 || days > max_days {
        return Err(ApiError::invalid(format!(
            "lifetime_days must be between 1 and {max_days}"
        )));
    }
    let issued = app
        .ca
        .issue(&body.csr, &publisher.name, days)
        .map_err(|e| match e {
            CaError::BadCsr(_) | CaError::WeakKey(_) => {
                ApiError::new(ProblemKind::InvalidInput, e.to_string())
            }
            other => ApiError::internal(other),
        })?;
    let issuer = ca_subject(&app);
    let mut tx = app.db.pool.begin().await?;
    let row_id: i64 = sqlx::query_scalar(
        "INSERT INTO certificates (publisher_id, fingerprint, serial, subject, issuer, not_before, not_after, origin, issued_to, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'store-ca', $8, $9) RETURNING id",
    )
    .bind(publisher.id)
    .bind(&issued.fingerprint_hex)
    .bind(&issued.serial_hex)
    .bind(&issued.subject)
    .bind(&issuer)
    .bind(issued.not_before)
    .bind(issued.not_after)
    .bind(me.user_id)
    .bind(db::now())
    .fetch_one(&mut *tx)
    .await?;
    audit(
        &mut tx,
        Some(me.user_id),
        "certificate.issue",
        &format!("certificate:{}", issued.fingerprint_hex),
        None,
    )
    .await?;
    tx.commit().await?;
    let chain_pem = format!("{}{}", issued.pem, app.ca.certificate_pem());
    Ok((
        StatusCode::CREATED,
        Json(IssuedCertificateView {
            certificate: CertificateView {
                row_id,
                fingerprint: issued.fingerprint_hex,
                serial: issued.serial_hex,
                subject: issued.subject,
                issuer,
                origin: "store-ca".into(),
                not_before: rfc3339(issued.not_before),
                not_after: rfc3339(issued.not_after),
                revoked_at: None,
                revoked_reason: None,
            },
            certificate_pem: issued.pem,
            chain_pem,
        }),
    ))
}

fn ca_subject(app: &AppState) -> String {
    use x509_parser::prelude::*;
    X509Certificate::from_der(app.ca.certificate_der())
        .map(|(_, c)| c.subject().to_string())
        .unwrap_or_default()
}

/// `?revoked=…&cursor=…&limit=…` of the certificate list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CertificateListQuery {
    /// Only revoked certificates (`true`) or only unrevoked ones (`false`); both when absent.
    /// A verifier that wants the store's revocations asks for `true`.
    pub revoked: Option<bool>,
    /// Opaque cursor from the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Items per page (1–100, default 20).
    pub limit: Option<u32>,
}

/// Certificates of a publisher, in the order the store recorded them (issued here, or first
/// used for an upload). Public, like a transparency log.
#[utoipa::path(get, path = "/api/v1/publishers/{publisher}/certificates", tag = "certificates", params(PublisherPath, CertificateListQuery),
    responses((status = 200, body = CertificatePage), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn list_certificates(
    State(app): State<AppState>,
    _caller: Caller,
    Path(path): Path<PublisherPath>,
    Query(query): Query<CertificateListQuery>,
) -> ApiResult<Json<Page<CertificateView>>> {
    let page = PageQuery {
        cursor: query.cursor,
        limit: query.limit,
    }
    .parse()?;
    // -1 for either, else 1 or 0 against whether `revoked_at` is set.
    let revoked = query.revoked.map_or(-1, i64::from);
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM certificates \
         WHERE publisher_id = (SELECT id FROM publishers WHERE name = $1) AND id > $2 \
           AND ($3 = -1 OR (CASE WHEN revoked_at IS NULL THEN 0 ELSE 1 END) = $3) \
         ORDER BY id LIMIT $4"
    ))
    .bind(&path.publisher)
    .bind(page.after)
    .bind(revoked)
    .bind(page.fetch_limit())
    .fetch_all(&app.db.pool)
    .await?;
    if rows.is_empty() && !publisher_exists(&app, &path.publisher).await? {
        return Err(ApiError::not_found(format!(
            "no publisher named `{}`",
            path.publisher
        )));
    }
    let views = rows
        .iter()
        .map(certificate_view)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(page.finish(views, |c| c.row_id)))
}

page_schema!(CertificatePage, CertificateView);

async fn publisher_exists(app: &AppState, name: &str) -> ApiResult<bool> {
    Ok(
        sqlx::query("SELECT 1 AS one FROM publishers WHERE name = $1")
            .bind(name)
            .fetch_optional(&app.db.pool)
            .await?
            .is_some(),
    )
}

/// Revokes a certificate: versions signed with it are refused from now on. Owners (and admins).
#[utoipa::path(post, path = "/api/v1/publishers/{publisher}/certificates/{fingerprint}/revoke", tag = "certificates", security(("bearer" = [])),
    params(CertificatePath), request_body = RevokeRequest,
    responses((status = 200, body = CertificateView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn revoke_certificate(
    State(app): State<AppState>,
    caller: Caller,
    Path(path): Path<CertificatePath>,
    Json(body): Json<RevokeRequest>,
) -> ApiResult<Json<CertificateView>> {
    let (me, publisher) = caller
        .require_publisher(
            &app,
            &path.publisher,
            MemberRole::Owner,
            Scope::ManagePublisher,
        )
        .await?;
    let reason = super::checked_reason(&body.reason)?;
    let fingerprint = path.fingerprint.to_ascii_lowercase();
    let mut tx = app.db.pool.begin().await?;
    let changed = revoke_every_encoding(
        &mut tx,
        app.db.engine,
        publisher.id,
        &fingerprint,
        me.user_id,
        reason,
    )
    .await?;
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM certificates WHERE fingerprint = $1 AND publisher_id = $2"
    ))
    .bind(&fingerprint)
    .bind(publisher.id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| {
        ApiError::not_found(format!(
            "publisher `{}` has no certificate {fingerprint}",
            publisher.name
        ))
    })?;
    if changed > 0 {
        audit(
            &mut tx,
            Some(me.user_id),
            "certificate.revoke",
            &format!("certificate:{fingerprint}"),
            Some(reason),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Json(certificate_view(&row)?))
}

/// Revokes `publisher_id`'s certificate `fingerprint` and every other recorded encoding of
/// it, in `tx`; returns how many rows it revoked (0 when the certificate is unknown or
/// already revoked).
///
/// An ECDSA signature re-encoded as (r, n − s) makes another, equally valid certificate with
/// another fingerprint, which a holder of the leaked key may already have uploaded with. The
/// encodings share what the issuer signed, so their issuer and serial: that identity is what
/// is revoked. The identity's turn ([`take_identity_turn`]) is taken first, so an upload
/// recording a new encoding either commits before this reads the rows (and its row is
/// revoked here) or waits and then finds the revocation ([`record_signer`]).
pub async fn revoke_every_encoding(
    tx: &mut AnyConnection,
    engine: Engine,
    publisher_id: i64,
    fingerprint: &str,
    revoked_by: i64,
    reason: &str,
) -> sqlx::Result<u64> {
    if engine == Engine::Postgres {
        // [`take_identity_turn`]'s key, computed from the named row in the same statement: a
        // read before the update would hold an old snapshot on SQLite.
        sqlx::query(
            "SELECT count(*) FROM (SELECT pg_advisory_xact_lock(hashtextextended('certificate ' || serial || ' ' || issuer, 0)) \
             FROM certificates WHERE fingerprint = $1 AND publisher_id = $2) AS turns",
        )
        .bind(fingerprint)
        .bind(publisher_id)
        .fetch_one(&mut *tx)
        .await?;
    }
    let changed = sqlx::query(
        "UPDATE certificates SET revoked_at = $1, revoked_by = $2, revoked_reason = $3 \
         WHERE revoked_at IS NULL AND EXISTS (SELECT 1 FROM certificates named \
           WHERE named.fingerprint = $4 AND named.publisher_id = $5 \
             AND named.serial = certificates.serial AND named.issuer = certificates.issuer)",
    )
    .bind(db::now())
    .bind(revoked_by)
    .bind(reason)
    .bind(fingerprint)
    .bind(publisher_id)
    .execute(&mut *tx)
    .await?;
    Ok(changed.rows_affected())
}

/// Waits for, then holds until `tx` ends, the turn of one certificate identity (issuer and
/// serial), which revocations and uploads of that identity take before they read its rows.
///
/// On PostgreSQL this is a transaction-scoped advisory lock on a hash of the identity (a
/// collision only makes two identities take turns). Under READ COMMITTED each statement
/// sees what was committed before it began, so the statements after the turn see everything
/// the previous holder committed. SQLite needs nothing here: it runs one writing
/// transaction at a time, and both callers write before they read these rows.
async fn take_identity_turn(
    tx: &mut AnyConnection,
    engine: Engine,
    serial_hex: &str,
    issuer: &str,
) -> sqlx::Result<()> {
    if engine == Engine::Postgres {
        sqlx::query(
            "SELECT count(*) FROM (SELECT pg_advisory_xact_lock(hashtextextended('certificate ' || $1 || ' ' || $2, 0))) AS turns",
        )
        .bind(serial_hex)
        .bind(issuer)
        .fetch_one(&mut *tx)
        .await?;
    }
    Ok(())
}

/// A signer's leaf certificate as an upload records it.
#[derive(Debug, Clone, Copy)]
pub struct SignerRecord<'a> {
    /// SHA-256 of the DER, bare hex.
    pub fingerprint: &'a str,
    /// Serial number, lowercase hex.
    pub serial_hex: &'a str,
    /// Subject, RFC 4514 style.
    pub subject: &'a str,
    /// Issuer, RFC 4514 style.
    pub issuer: &'a str,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
}

/// Records an upload's signer certificate (an external one, unless the store issued it and
/// so recorded it already) in the upload's transaction `tx`, which has already written (see
/// [`take_identity_turn`]). Refused as revoked when any encoding of it was revoked since the
/// upload's signature was checked: that check ran before the package was stored, and a
/// revocation committed in between would otherwise miss the new encoding's row.
pub async fn record_signer(
    tx: &mut AnyConnection,
    engine: Engine,
    publisher_id: i64,
    signer: SignerRecord<'_>,
    now: i64,
) -> ApiResult<()> {
    take_identity_turn(tx, engine, signer.serial_hex, signer.issuer).await?;
    let revoked: Option<String> = sqlx::query_scalar(
        "SELECT fingerprint FROM certificates WHERE serial = $1 AND issuer = $2 AND revoked_at IS NOT NULL LIMIT 1",
    )
    .bind(signer.serial_hex)
    .bind(signer.issuer)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(revoked) = revoked {
        return Err(ApiError::new(
            ProblemKind::UntrustedCertificate,
            format!(
                "certificate {} was revoked while this upload was being recorded (as {revoked}, the same issuer and serial)",
                signer.fingerprint
            ),
        )
        .with_code("revoked"));
    }
    sqlx::query(
        "INSERT INTO certificates (publisher_id, fingerprint, serial, subject, issuer, not_before, not_after, origin, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'external', $8) ON CONFLICT (fingerprint) DO NOTHING",
    )
    .bind(publisher_id)
    .bind(signer.fingerprint)
    .bind(signer.serial_hex)
    .bind(signer.subject)
    .bind(signer.issuer)
    .bind(signer.not_before)
    .bind(signer.not_after)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
