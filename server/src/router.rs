//! Every route of the service, on one screen. Paths and auth live on the handlers
//! (`#[utoipa::path]` and their first line); this file decides what is mounted and how.

use axum::Router;
use axum::http::HeaderValue;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_scalar::{Scalar, Servable};

use crate::app::AppState;
use crate::controllers::{
    admin, auth, blobs, certificates, ops, plugins, publishers, release_metadata, reports, review,
    scan_jobs, tokens, updates, versions,
};
use crate::http;

#[derive(OpenApi)]
#[openapi(
    info(title = "plugstore", description = "Plugin store registry API. Errors are RFC 9457 problem+json; see docs/API-DESIGN.md."),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Accounts and sessions"),
        (name = "tokens", description = "API tokens for CI and scripts"),
        (name = "publishers", description = "Publisher namespaces and members"),
        (name = "certificates", description = "The store's CA and code-signing certificates"),
        (name = "plugins", description = "Plugins and versions"),
        (name = "blobs", description = "Content-addressed downloads"),
        (name = "updates", description = "Update checks and staged rollouts for host applications"),
        (name = "review", description = "Moderation: review queue, blocks, abuse reports (reviewer role)"),
        (name = "admin", description = "Store administration"),
        (name = "operations", description = "Health, readiness, metrics"),
        (name = "internal", description = "For scan workers, with the worker token"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT or pst_ API token")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "worker",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("scan worker token")
                    .build(),
            ),
        );
    }
}

/// The JSON API: compressed, body-limited.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        // Accounts and sessions
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        // API tokens
        .routes(routes!(tokens::create_token, tokens::list_tokens))
        .routes(routes!(tokens::revoke_token))
        // Publishers
        .routes(routes!(
            publishers::create_publisher,
            publishers::list_publishers
        ))
        .routes(routes!(publishers::get_publisher))
        .routes(routes!(publishers::list_members))
        .routes(routes!(publishers::put_member, publishers::remove_member))
        // Code-signing certificates
        .routes(routes!(
            certificates::issue_certificate,
            certificates::list_certificates
        ))
        .routes(routes!(certificates::revoke_certificate))
        // Plugins
        .routes(routes!(plugins::search_plugins))
        .routes(routes!(plugins::get_plugin))
        .routes(routes!(plugins::list_versions))
        .routes(routes!(plugins::get_version))
        .routes(routes!(plugins::get_scan_report))
        .routes(routes!(versions::yank_version))
        .routes(routes!(versions::unyank_version))
        .routes(routes!(versions::set_rollout))
        // Host applications
        .routes(routes!(updates::check_updates))
        .routes(routes!(reports::report_abuse))
        // Moderation (reviewer role)
        .routes(routes!(review::review_queue))
        .routes(routes!(review::review_version))
        .routes(routes!(review::claim_review))
        .routes(routes!(review::approve_version))
        .routes(routes!(review::reject_version))
        .routes(routes!(review::block_version))
        .routes(routes!(review::unblock_version))
        .routes(routes!(review::block_plugin))
        .routes(routes!(review::unblock_plugin))
        .routes(routes!(reports::list_reports))
        .routes(routes!(reports::resolve_report))
        // Scan workers (internal, worker token)
        .routes(routes!(scan_jobs::claim_scan_job))
        .routes(routes!(scan_jobs::heartbeat_scan_job))
        .routes(routes!(scan_jobs::report_scan_job))
        .routes(routes!(scan_jobs::fail_scan_job))
        // Administration
        .routes(routes!(admin::list_users))
        .routes(routes!(admin::update_user, admin::delete_user))
        .routes(routes!(admin::list_audit_log))
}

/// Downloads and operations: never compressed (blobs are served byte-exact for Range).
fn raw_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(blobs::get_blob))
        .routes(routes!(release_metadata::get_release_metadata))
        .routes(routes!(certificates::ca_certificate))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::jwks))
}

/// Uploads: streamed with their own size limit and a longer timeout.
fn upload_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(versions::publish_version))
}

/// The OpenAPI document of every route.
pub fn openapi() -> OpenApiDoc {
    let (_, mut doc) = api_routes().split_for_parts();
    doc.merge(raw_routes().split_for_parts().1);
    doc.merge(upload_routes().split_for_parts().1);
    doc
}

/// The complete service.
pub fn build(app: AppState) -> Router {
    let (api, mut doc) = api_routes().split_for_parts();
    let (raw, raw_doc) = raw_routes().split_for_parts();
    let (upload, upload_doc) = upload_routes().split_for_parts();
    doc.merge(raw_doc);
    doc.merge(upload_doc);
    let settings = &app.settings;
    let request_timeout = settings.http.request_timeout_secs;
    let api = http::with_timeout(http::json_api_layers(api, settings), request_timeout);
    let raw = http::with_timeout(raw, request_timeout);
    let upload = http::with_timeout(
        http::upload_layers(upload),
        settings.publish.upload_timeout_secs,
    );
    let docs = Router::<AppState>::new()
        .merge(Scalar::with_url("/docs", doc.clone()))
        .layer(http::docs_csp());
    let spec = doc.to_json().unwrap_or_else(|_| "{}".into());
    let router = Router::new()
        .merge(api)
        .merge(raw)
        .merge(upload)
        .route(
            "/openapi.json",
            get(move || async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )],
                    spec,
                )
            }),
        )
        .merge(docs)
        .fallback(http::not_found);
    http::common_layers(router, app)
}
