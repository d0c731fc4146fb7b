//! The registry's REST API as the CLI uses it: typed requests and responses, and a typed error
//! for RFC 9457 problem+json answers.
//!
//! The response types mirror the server's views. They ignore fields they do not know, so a
//! newer store keeps working with an older CLI, and they serialize unchanged for `--json`.

use std::fmt;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Media type of a version upload: a 4-byte big-endian envelope length, the signature envelope
/// (JSON), then the package bytes.
pub const UPLOAD_MEDIA_TYPE: &str = "application/vnd.plugstore.upload.v1";

/// How long to wait for a TCP/TLS connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an ordinary API call may take; uploads are bounded by the server's upload timeout.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Largest error body kept for a message when the answer is not problem+json.
const MAX_UNEXPECTED_BODY: usize = 300;

/// A credential that must not end up in logs or debug output.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret string.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends or stores it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// An RFC 9457 problem as the store sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Stable identifier of the kind, e.g. `/problems/untrusted-certificate`.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary of the kind.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What went wrong in this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// A finer, stable reason within the type (`expired`, `id-mismatch`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Request id to quote when reporting a server error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Problem {
    /// The slug of the problem type (`untrusted-certificate` for
    /// `/problems/untrusted-certificate`).
    pub fn kind(&self) -> &str {
        self.problem_type
            .rsplit('/')
            .next()
            .unwrap_or(&self.problem_type)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.title)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        if let Some(code) = &self.code {
            write!(f, " (code: {code})")?;
        }
        if let Some(id) = &self.request_id
            && self.status >= 500
        {
            write!(f, " [request id {id}]")?;
        }
        Ok(())
    }
}

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The store refused the request and said why.
    #[error("{problem}")]
    Problem {
        /// The problem document.
        problem: Box<Problem>,
        /// Seconds from `Retry-After`, when the store sent one.
        retry_after: Option<u64>,
    },
    /// The store answered with an error that is not problem+json (a proxy, an old store).
    #[error("the registry answered {status}{}", body_suffix(.body))]
    Unexpected {
        /// HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// No answer: DNS, connection, TLS, timeout.
    #[error("cannot reach the registry at {url}")]
    Transport {
        /// The URL requested.
        url: String,
        /// What failed.
        #[source]
        source: reqwest::Error,
    },
    /// A list longer than the CLI reads ([`MAX_PAGES`] pages): stopping there silently
    /// would drop items, such as revocations, from the end.
    #[error("the registry's list at {url} goes on past {MAX_PAGES} pages; the CLI stops there")]
    ListTooLong {
        /// The list's URL.
        url: String,
    },
    /// An answer the CLI cannot read.
    #[error("the registry's answer to {url} is not what this CLI expects")]
    Decode {
        /// The URL requested.
        url: String,
        /// The parse failure.
        #[source]
        source: serde_json::Error,
    },
}

fn body_suffix(body: &str) -> String {
    if body.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", body.trim())
    }
}

/// A user, as the store shows them to themselves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserView {
    /// User id.
    pub id: i64,
    /// Username.
    pub username: String,
    /// Email address.
    pub email: String,
    /// Store-wide role (`developer`, `reviewer`, `admin`).
    pub role: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Whether an admin disabled the account.
    #[serde(default)]
    pub disabled: bool,
}

/// Tokens of a login session.
#[derive(Debug, Clone, Deserialize)]
pub struct SessionTokens {
    /// Short-lived JWT for `Authorization: Bearer`.
    pub access_token: Secret,
    /// Single-use token for the next refresh.
    pub refresh_token: Secret,
    /// Seconds until the session ends.
    #[serde(default)]
    pub refresh_expires_in: i64,
}

/// A publisher namespace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublisherView {
    /// Namespace.
    pub name: String,
    /// Human-readable name.
    pub display_name: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

/// An API token's metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenView {
    /// Token id.
    pub id: i64,
    /// Name given at creation.
    pub name: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Publisher the token is limited to.
    #[serde(default)]
    pub publisher: Option<String>,
    /// Plugin the token is limited to.
    #[serde(default)]
    pub plugin: Option<String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Expiry (RFC 3339).
    pub expires_at: String,
    /// Last use (RFC 3339).
    #[serde(default)]
    pub last_used_at: Option<String>,
    /// Whether it was revoked.
    #[serde(default)]
    pub revoked: bool,
}

/// A newly created API token with its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedToken {
    /// Metadata.
    #[serde(flatten)]
    pub token: TokenView,
    /// The secret, shown once.
    pub secret: Secret,
}

/// What to create a token for.
#[derive(Debug, Clone, Serialize)]
pub struct CreateTokenRequest {
    /// Name, e.g. `github-actions`.
    pub name: String,
    /// `publish`, `yank`, `manage-publisher`.
    pub scopes: Vec<String>,
    /// Limit to this publisher.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    /// Limit to this plugin of `publisher`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// Lifetime in days.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u64>,
}

/// A code-signing certificate known to the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertificateView {
    /// SHA-256 of the DER, hex.
    pub fingerprint: String,
    /// Serial number, hex.
    pub serial: String,
    /// Subject.
    pub subject: String,
    /// Issuer.
    pub issuer: String,
    /// `store-ca` or `external`.
    pub origin: String,
    /// Start of validity (RFC 3339).
    pub not_before: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
    /// When it was revoked (RFC 3339).
    #[serde(default)]
    pub revoked_at: Option<String>,
    /// Why it was revoked.
    #[serde(default)]
    pub revoked_reason: Option<String>,
}

/// A certificate the store's CA just issued.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedCertificate {
    /// Metadata.
    #[serde(flatten)]
    pub certificate: CertificateView,
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// The certificate and the store's CA certificate, PEM.
    pub chain_pem: String,
}

/// A plugin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginView {
    /// `publisher/name`.
    pub id: String,
    /// Publisher name.
    pub publisher: String,
    /// Plugin name.
    pub name: String,
    /// Short description.
    pub description: String,
    /// Highest published version.
    #[serde(default)]
    pub latest_version: Option<String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

/// A version of a plugin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionView {
    /// Semver version.
    pub version: String,
    /// Lifecycle state.
    pub state: String,
    /// `sha256:<hex>` of the package.
    pub package_digest: String,
    /// Package size in bytes.
    pub package_size: u64,
    /// Where to download the package.
    pub download_url: String,
    /// Upload time (RFC 3339).
    pub created_at: String,
    /// The staged rollout (absent from stores older than rollouts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
}

/// A version's staged rollout: the share of hosts its update is offered to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    /// Percentage of installs offered the version (0–100).
    pub percent: u8,
    /// Offered to nobody new, whatever the percentage.
    pub paused: bool,
}

/// The store's answer to an upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishedVersion {
    /// `publisher/name`.
    pub plugin: String,
    /// The version as stored.
    #[serde(flatten)]
    pub version: VersionView,
    /// Where to read the version back.
    pub url: String,
}

/// A page of a list.
#[derive(Debug, Deserialize)]
struct Page<T> {
    items: Vec<T>,
    #[serde(default)]
    next_cursor: Option<String>,
}

/// Lists are read to the end, but never beyond this many pages (a misbehaving server must
/// not keep the CLI looping).
const MAX_PAGES: usize = 1000;

/// A client of one registry.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
}

impl RegistryClient {
    /// A client of the registry at `base` (e.g. `https://plugins.example.org`).
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("plugstore-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .build()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// The registry's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn request(&self, method: Method, path: &str, bearer: Option<&Secret>) -> RequestBuilder {
        let builder = self.http.request(method, self.url(path));
        match bearer {
            Some(token) => builder.header(AUTHORIZATION, format!("Bearer {}", token.expose())),
            None => builder,
        }
    }

    async fn send(&self, builder: RequestBuilder) -> Result<(StatusCode, Vec<u8>), ApiError> {
        let request = builder.build().map_err(|source| ApiError::Transport {
            url: self.base.clone(),
            source,
        })?;
        let url = request.url().to_string();
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|source| ApiError::Transport {
                url: url.clone(),
                source,
            })?;
        read_response(response, &url).await
    }

    async fn call<T: DeserializeOwned>(&self, builder: RequestBuilder) -> Result<T, ApiError> {
        let (_, body) = self.send(builder.timeout(CALL_TIMEOUT)).await?;
        decode(&body, self.base())
    }

    async fn call_empty(&self, builder: RequestBuilder) -> Result<(), ApiError> {
        self.send(builder.timeout(CALL_TIMEOUT)).await.map(|_| ())
    }

    async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        bearer: Option<&Secret>,
    ) -> Result<Vec<T>, ApiError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut builder = self
                .request(Method::GET, path, bearer)
                .query(&[("limit", "100")]);
            if let Some(cursor) = &cursor {
                builder = builder.query(&[("cursor", cursor)]);
            }
            let page: Page<T> = self.call(builder).await?;
            items.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(items),
            }
        }
        Err(ApiError::ListTooLong {
            url: self.url(path),
        })
    }

    /// `POST /api/v1/auth/register`.
    pub async fn register(
        &self,
        username: &str,
        email: &str,
        password: &Secret,
    ) -> Result<UserView, ApiError> {
        let body = serde_json::json!({
            "username": username,
            "email": email,
            "password": password.expose(),
        });
        self.call(
            self.request(Method::POST, "/api/v1/auth/register", None)
                .json(&body),
        )
        .await
    }

    /// `POST /api/v1/auth/login`.
    pub async fn login(
        &self,
        username: &str,
        password: &Secret,
    ) -> Result<SessionTokens, ApiError> {
        let body = serde_json::json!({ "username": username, "password": password.expose() });
        self.call(
            self.request(Method::POST, "/api/v1/auth/login", None)
                .json(&body),
        )
        .await
    }

    /// `POST /api/v1/auth/refresh`: spends `refresh_token`, returns the next pair.
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<SessionTokens, ApiError> {
        let body = serde_json::json!({ "refresh_token": refresh_token.expose() });
        self.call(
            self.request(Method::POST, "/api/v1/auth/refresh", None)
                .json(&body),
        )
        .await
    }

    /// `POST /api/v1/auth/logout`.
    pub async fn logout(&self, access: &Secret) -> Result<(), ApiError> {
        self.call_empty(self.request(Method::POST, "/api/v1/auth/logout", Some(access)))
            .await
    }

    /// `GET /api/v1/me`.
    pub async fn me(&self, bearer: &Secret) -> Result<UserView, ApiError> {
        self.call(self.request(Method::GET, "/api/v1/me", Some(bearer)))
            .await
    }

    /// `POST /api/v1/publishers`.
    pub async fn create_publisher(
        &self,
        bearer: &Secret,
        name: &str,
        display_name: Option<&str>,
    ) -> Result<PublisherView, ApiError> {
        let body = serde_json::json!({ "name": name, "display_name": display_name });
        self.call(
            self.request(Method::POST, "/api/v1/publishers", Some(bearer))
                .json(&body),
        )
        .await
    }

    /// `POST /api/v1/tokens`.
    pub async fn create_token(
        &self,
        bearer: &Secret,
        request: &CreateTokenRequest,
    ) -> Result<CreatedToken, ApiError> {
        self.call(
            self.request(Method::POST, "/api/v1/tokens", Some(bearer))
                .json(request),
        )
        .await
    }

    /// `GET /api/v1/tokens`, every page.
    pub async fn list_tokens(&self, bearer: &Secret) -> Result<Vec<TokenView>, ApiError> {
        self.list("/api/v1/tokens", Some(bearer)).await
    }

    /// `DELETE /api/v1/tokens/{id}`.
    pub async fn revoke_token(&self, bearer: &Secret, id: i64) -> Result<(), ApiError> {
        self.call_empty(self.request(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            Some(bearer),
        ))
        .await
    }

    /// `POST /api/v1/publishers/{publisher}/certificates`.
    pub async fn issue_certificate(
        &self,
        bearer: &Secret,
        publisher: &str,
        csr_pem: &str,
        lifetime_days: Option<u32>,
    ) -> Result<IssuedCertificate, ApiError> {
        let body = serde_json::json!({ "csr": csr_pem, "lifetime_days": lifetime_days });
        self.call(
            self.request(
                Method::POST,
                &format!("/api/v1/publishers/{}/certificates", segment(publisher)),
                Some(bearer),
            )
            .json(&body),
        )
        .await
    }

    /// `GET /api/v1/publishers/{publisher}/certificates?revoked=true` (public), every page:
    /// the store's revocations of the publisher's certificates.
    pub async fn revoked_certificates(
        &self,
        publisher: &str,
    ) -> Result<Vec<CertificateView>, ApiError> {
        self.list(
            &format!(
                "/api/v1/publishers/{}/certificates?revoked=true",
                segment(publisher)
            ),
            None,
        )
        .await
    }

    /// `GET /ca.pem`: the store's CA certificate.
    pub async fn ca_pem(&self) -> Result<String, ApiError> {
        let (_, body) = self
            .send(
                self.request(Method::GET, "/ca.pem", None)
                    .timeout(CALL_TIMEOUT),
            )
            .await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// `GET /api/v1/plugins/{publisher}/{name}`.
    pub async fn plugin(&self, publisher: &str, name: &str) -> Result<PluginView, ApiError> {
        self.call(self.request(
            Method::GET,
            &format!("/api/v1/plugins/{}/{}", segment(publisher), segment(name)),
            None,
        ))
        .await
    }

    /// `GET /api/v1/plugins/{publisher}/{name}/versions`, every page.
    pub async fn versions(
        &self,
        publisher: &str,
        name: &str,
    ) -> Result<Vec<VersionView>, ApiError> {
        self.list(
            &format!(
                "/api/v1/plugins/{}/{}/versions",
                segment(publisher),
                segment(name)
            ),
            None,
        )
        .await
    }

    /// `PUT /api/v1/plugins/{publisher}/{name}/versions/{version}` with a streamed body of
    /// `content_length` bytes. Returns whether the version was created (201) or already
    /// there with the same bytes (200).
    pub async fn publish(
        &self,
        bearer: &Secret,
        publisher: &str,
        name: &str,
        version: &str,
        body: reqwest::Body,
        content_length: u64,
    ) -> Result<(bool, PublishedVersion), ApiError> {
        let path = format!(
            "/api/v1/plugins/{}/{}/versions/{}",
            segment(publisher),
            segment(name),
            segment(version)
        );
        let builder = self
            .request(Method::PUT, &path, Some(bearer))
            .header(CONTENT_TYPE, UPLOAD_MEDIA_TYPE)
            // Announced so the store can refuse an oversized upload before it is sent.
            .header(CONTENT_LENGTH, content_length)
            .body(body);
        match self.send(builder).await {
            Ok((status, body)) => Ok((status == StatusCode::CREATED, decode(&body, self.base())?)),
            Err(error @ ApiError::Transport { .. }) => {
                Err(self.early_refusal(&path, bearer, error).await)
            }
            Err(other) => Err(other),
        }
    }

    /// The reason behind an upload that broke off.
    ///
    /// A store that refuses an upload before reading its body (not allowed, unknown
    /// publisher, bad version) answers at once and closes the connection. The store reads
    /// and discards the rest for up to 30 s so that the client gets the answer, but a proxy
    /// in front of it, or a slow link, can still turn that close into a broken pipe. Those
    /// checks come before the store reads anything, so an empty upload to the same URL meets
    /// the same refusal, at no cost. If the empty upload gets further (the store reports it
    /// truncated), the connection really broke and `error` stands.
    async fn early_refusal(&self, path: &str, bearer: &Secret, error: ApiError) -> ApiError {
        let probe = self
            .request(Method::PUT, path, Some(bearer))
            .header(CONTENT_TYPE, UPLOAD_MEDIA_TYPE)
            .header(CONTENT_LENGTH, 0)
            .timeout(CALL_TIMEOUT);
        match self.send(probe).await {
            Err(refusal @ ApiError::Problem { .. })
                if refusal_problem_kind(&refusal) != Some("upload-truncated") =>
            {
                refusal
            }
            _ => error,
        }
    }

    /// `POST …/versions/{version}/yank` or `…/unyank`.
    pub async fn change_state(
        &self,
        bearer: &Secret,
        publisher: &str,
        name: &str,
        version: &str,
        action: StateChange,
        reason: &str,
    ) -> Result<VersionView, ApiError> {
        let path = format!(
            "/api/v1/plugins/{}/{}/versions/{}/{}",
            segment(publisher),
            segment(name),
            segment(version),
            action.path()
        );
        self.call(
            self.request(Method::POST, &path, Some(bearer))
                .json(&serde_json::json!({ "reason": reason })),
        )
        .await
    }

    /// `PUT …/versions/{version}/rollout`.
    pub async fn set_rollout(
        &self,
        bearer: &Secret,
        publisher: &str,
        name: &str,
        version: &str,
        rollout: Rollout,
    ) -> Result<Rollout, ApiError> {
        let path = format!(
            "/api/v1/plugins/{}/{}/versions/{}/rollout",
            segment(publisher),
            segment(name),
            segment(version),
        );
        self.call(
            self.request(Method::PUT, &path, Some(bearer))
                .json(&rollout),
        )
        .await
    }
}

fn refusal_problem_kind(error: &ApiError) -> Option<&str> {
    match error {
        ApiError::Problem { problem, .. } => Some(problem.kind()),
        _ => None,
    }
}

/// A state change a publisher may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateChange {
    /// published → yanked.
    Yank,
    /// yanked → published.
    Unyank,
}

impl StateChange {
    fn path(self) -> &'static str {
        match self {
            Self::Yank => "yank",
            Self::Unyank => "unyank",
        }
    }
}

/// Percent-encodes a path segment (names are validated by the store; this keeps a stray `/`
/// or `?` typed by a user from addressing another resource).
fn segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'+') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

async fn read_response(response: Response, url: &str) -> Result<(StatusCode, Vec<u8>), ApiError> {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let is_problem = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"));
    let body = response
        .bytes()
        .await
        .map_err(|source| ApiError::Transport {
            url: url.to_owned(),
            source,
        })?;
    if status.is_success() {
        return Ok((status, body.to_vec()));
    }
    if is_problem && let Ok(problem) = serde_json::from_slice::<Problem>(&body) {
        return Err(ApiError::Problem {
            problem: Box::new(problem),
            retry_after,
        });
    }
    let text = String::from_utf8_lossy(&body);
    let mut snippet: String = text.chars().take(MAX_UNEXPECTED_BODY).collect();
    if text.chars().count() > MAX_UNEXPECTED_BODY {
        snippet.push('…');
    }
    Err(ApiError::Unexpected {
        status: status.as_u16(),
        body: snippet,
    })
}

fn decode<T: DeserializeOwned>(body: &[u8], url: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|source| ApiError::Decode {
        url: url.to_owned(),
        source,
    })
}

/// The upload framing that precedes the package bytes: the envelope's length as a u32
/// big-endian, then the envelope.
pub fn upload_prefix(envelope_json: &[u8]) -> Result<Vec<u8>, std::num::TryFromIntError> {
    let len = u32::try_from(envelope_json.len())?;
    let mut prefix = Vec::with_capacity(4 + envelope_json.len());
    prefix.extend_from_slice(&len.to_be_bytes());
    prefix.extend_from_slice(envelope_json);
    Ok(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_render_as_title_detail_and_code() {
        let problem: Problem = serde_json::from_str(
            r#"{"type":"/problems/untrusted-certificate","title":"Untrusted certificate","status":422,
                "detail":"the certificate has expired","code":"expired","extra":1}"#,
        )
        .unwrap();
        assert_eq!(problem.kind(), "untrusted-certificate");
        assert_eq!(
            problem.to_string(),
            "Untrusted certificate: the certificate has expired (code: expired)"
        );
        let internal: Problem = serde_json::from_str(
            r#"{"type":"/problems/internal","title":"Internal server error","status":500,"request_id":"r1"}"#,
        )
        .unwrap();
        assert_eq!(
            internal.to_string(),
            "Internal server error [request id r1]"
        );
    }

    #[test]
    fn upload_prefix_is_a_big_endian_length_then_the_envelope() {
        let prefix = upload_prefix(b"{\"a\":1}").unwrap();
        assert_eq!(&prefix[..4], &[0, 0, 0, 7]);
        assert_eq!(&prefix[4..], b"{\"a\":1}");
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(segment("acme"), "acme");
        assert_eq!(segment("1.0.0-rc.1+build"), "1.0.0-rc.1+build");
        assert_eq!(segment("a/b?c"), "a%2Fb%3Fc");
    }

    #[test]
    fn secrets_do_not_debug_print() {
        assert_eq!(format!("{:?}", Secret::new("psr_x")), "Secret(…)");
    }
}
