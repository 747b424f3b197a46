//! The HTTP control API (`/v1/...`): router, authentication, audit and metrics middleware, the
//! OpenAPI document, health and readiness, the change feed and server-sent events. Imports the
//! domain services (catalog, ingest); they never import it.

mod client;
mod delivery;
mod download;
pub mod error;
mod live;
mod mam;
mod playout;
mod review;
mod routes;
mod storage;
mod system;
mod tus;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, head, options, post, put};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use utoipa::OpenApi;

pub use error::ApiError;

use crate::catalog::{Catalog, Principal};
use crate::config::appliance::ApplianceConfig;

/// What every handler shares.
pub struct AppState {
    pub catalog: Catalog,
    /// The job queue, in the catalog's database.
    pub queue: crate::jobs::JobQueue,
    pub cfg: Arc<ApplianceConfig>,
    /// Where uploads are stored (`data_dir/media`).
    pub media_dir: PathBuf,
    pub metrics: PrometheusHandle,
    /// False while starting and once shutting down.
    pub ready: AtomicBool,
    logins: Mutex<HashMap<(String, IpAddr), (u32, Instant)>>,
    /// Principals of recently seen tokens, so that a burst of requests does not look the same
    /// token up each time; entries live one second and revocation here clears them at once.
    tokens: Mutex<HashMap<String, (Caller, Instant)>>,
    /// The job supervisor, once the service runs one.
    pub jobs: std::sync::OnceLock<Arc<crate::jobs::supervisor::Supervisor>>,
    /// The live service, once the service runs one.
    pub live: std::sync::OnceLock<Arc<crate::hub::registry::LiveService>>,
    /// The playout service, once the service runs one.
    pub playout: std::sync::OnceLock<Arc<crate::playout::service::PlayoutService>>,
    /// Storages, copies, fixity, retention and health, once the service runs them.
    pub storages: std::sync::OnceLock<Arc<crate::storage::Storages>>,
    /// Uploads running at once are bounded (each holds a connection and disk bandwidth).
    pub uploads: tokio::sync::Semaphore,
    /// Resumable uploads' part files open in this process.
    pub(crate) tus: tus::Live,
    /// Cancelled on shutdown: event streams end so that the server can drain.
    pub stopping: tokio_util::sync::CancellationToken,
}

impl AppState {
    pub fn new(
        catalog: Catalog,
        cfg: Arc<ApplianceConfig>,
        media_dir: PathBuf,
        metrics: PrometheusHandle,
    ) -> Self {
        AppState {
            queue: crate::jobs::JobQueue::new(catalog.clone()),
            catalog,
            cfg,
            media_dir,
            metrics,
            ready: AtomicBool::new(false),
            logins: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            stopping: tokio_util::sync::CancellationToken::new(),
            uploads: tokio::sync::Semaphore::new(8),
            tus: tus::Live::default(),
            jobs: std::sync::OnceLock::new(),
            live: std::sync::OnceLock::new(),
            playout: std::sync::OnceLock::new(),
            storages: std::sync::OnceLock::new(),
        }
    }

    pub(crate) fn forget_tokens(&self) {
        if let Ok(mut t) = self.tokens.lock() {
            t.clear();
        }
    }

    /// Counts a login attempt, refusing it while `user`@`ip` has had `auth.login_attempts`
    /// failures in the window, or `ip` ten times that over all user names. Counted before the
    /// password is checked, so that parallel guesses cannot all slip in.
    pub(crate) fn login_attempt(&self, user: &str, ip: IpAddr) -> Result<(), ApiError> {
        let window = Duration::from_secs(u64::from(self.cfg.auth.login_window_s));
        let per_user = self.cfg.auth.login_attempts;
        let mut m = self.logins.lock().map_err(|_| ApiError::internal())?;
        m.retain(|_, (_, t)| t.elapsed() < window);
        let keys = [
            ((user.to_lowercase(), ip), per_user),
            (("*".to_string(), ip), per_user.saturating_mul(10)),
        ];
        for (k, limit) in &keys {
            if let Some((n, t)) = m.get(k) {
                if *n >= *limit {
                    let wait = window.saturating_sub(t.elapsed()).as_secs().max(1);
                    return Err(ApiError {
                        retry_after_s: Some(wait),
                        ..ApiError::new(
                            StatusCode::TOO_MANY_REQUESTS,
                            "rate_limited",
                            format!("too many failed logins; retry in {wait} s"),
                        )
                    });
                }
            }
        }
        if m.len() > 100_000 {
            // Under a flood of addresses: forget the oldest rather than grow without bound.
            m.clear();
        }
        for (k, _) in keys {
            m.entry(k).or_insert((0, Instant::now())).0 += 1;
        }
        Ok(())
    }

    pub(crate) fn login_succeeded(&self, user: &str, ip: IpAddr) {
        if let Ok(mut m) = self.logins.lock() {
            m.remove(&(user.to_lowercase(), ip));
            // Only failures count against the address.
            if let Some(e) = m.get_mut(&("*".to_string(), ip)) {
                e.0 = e.0.saturating_sub(1);
            }
        }
    }
}

pub type S = Arc<AppState>;

/// A JSON body whose rejections come in the error envelope.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Body<T>(pub T);

/// Query parameters whose rejections come in the error envelope.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// Path parameters whose rejections come in the error envelope.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// The authenticated caller.
#[derive(Clone)]
pub struct Caller(pub Principal, pub i64);

impl<St: Send + Sync> FromRequestParts<St> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &St,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(ApiError::unauthorized)
    }
}

pub const SESSION_COOKIE: &str = "antenne_session";

/// The secret a request carries: `Authorization: Bearer …`, else the session cookie.
fn secret_of(req: &Request) -> Option<String> {
    if let Some(v) = req.headers().get(header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string());
    }
    let cookies = req.headers().get_all(header::COOKIE);
    for c in cookies {
        for part in c.to_str().ok()?.split(';') {
            if let Some(v) = part.trim().strip_prefix(SESSION_COOKIE) {
                if let Some(v) = v.strip_prefix('=') {
                    return Some(v.to_string());
                }
            }
        }
    }
    None
}

async fn authenticate(State(st): State<S>, mut req: Request, next: Next) -> Response {
    let Some(secret) = secret_of(&req).filter(|s| !s.is_empty() && s.len() <= 200) else {
        return ApiError::unauthorized().into_response();
    };
    let cached = st.tokens.lock().ok().and_then(|m| {
        m.get(&secret)
            .filter(|(_, t)| t.elapsed() < Duration::from_secs(1))
            .map(|(p, _)| p.clone())
    });
    let principal = match cached {
        Some(p) => p,
        None => match st.catalog.authenticate(&secret).await {
            Ok(Some((p, id))) => {
                let c = Caller(p, id);
                if let Ok(mut m) = st.tokens.lock() {
                    if m.len() > 10_000 {
                        m.clear();
                    }
                    m.insert(secret.clone(), (c.clone(), Instant::now()));
                }
                c
            }
            Ok(None) => return ApiError::unauthorized().into_response(),
            Err(e) => return ApiError::from(e).into_response(),
        },
    };
    // A session cookie may drive a browser; a cross-site form cannot send JSON, so mutating
    // cookie-authenticated requests must.
    let by_cookie = !req.headers().contains_key(header::AUTHORIZATION);
    if by_cookie && mutating(req.method()) {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        // The panel's uploads carry this header instead: a cross-site page cannot set it
        // without a CORS preflight, which this server never approves.
        let panel = req.headers().contains_key(crate::web::UPLOAD_HEADER);
        if !json && !panel && req.uri().path() != "/v1/auth/logout" {
            return ApiError::forbidden(
                "a request authenticated by cookie must send application/json",
            )
            .into_response();
        }
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

fn mutating(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Every mutating call, its caller and its outcome, into the audit log: a change's entry in the
/// change's own transaction, a refused attempt's afterwards (best-effort).
async fn audit(State(st): State<S>, req: Request, next: Next) -> Response {
    if !mutating(req.method()) {
        return next.run(req).await;
    }
    let who = req.extensions().get::<Caller>().map(|c| c.0.clone());
    let action = format!(
        "{} {}",
        req.method(),
        req.extensions()
            .get::<MatchedPath>()
            .map_or("?", |m| m.as_str())
    );
    let object = req.uri().path().to_string();
    // The change's own transaction writes the entry (see `AuditScope`); what did not commit
    // one (a refused request, a change outside the catalog) is written here, best-effort.
    let scope = crate::catalog::AuditScope::new(who.clone(), action.clone(), object.clone());
    let resp = scope.run(next.run(req)).await;
    let written = scope.written();
    if !written.is_empty() {
        match st.catalog.audit_committed(&written).await {
            Ok(true) => return resp,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, action, "audit log: cannot check the entry"),
        }
    }
    let status = resp.status();
    let result = if status.is_success() {
        "ok".to_string()
    } else {
        format!("refused {}", status.as_u16())
    };
    if let Err(e) = st
        .catalog
        .audit(who.as_ref(), &action, &object, &result, "")
        .await
    {
        tracing::error!(error = %e, action, "audit log: cannot append");
    }
    resp
}

async fn measure(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("antenne_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("antenne_http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// The peer address, for login rate limiting (tests built without ConnectInfo use loopback).
pub(crate) fn peer(req_ci: Option<ConnectInfo<SocketAddr>>) -> IpAddr {
    req_ci.map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "antenne control API",
        description = "Catalog, users and rights, ingest, live sources and outputs, and the change feed of the antenne broadcast appliance. \
            Every route but /health, /ready, /openapi.json, /docs and /v1/auth/login needs \
            `Authorization: Bearer <token>` (a session from /v1/auth/login or an API token from \
            /v1/tokens) or the session cookie. Errors come as {\"error\": {\"code\", \"message\", \
            \"field\"?}} with a stable code; each operation lists the 4xx answers it can give. Lists \
            page with `limit` and the `next` cursor."
    ),
    paths(
        routes::health, routes::ready, routes::login, routes::logout,
        routes::list_assets, routes::search, routes::create_asset, routes::get_asset, routes::patch_asset,
        routes::delete_asset, routes::list_files, routes::register_file, routes::upload_file,
        routes::get_file, routes::file_content, routes::ingest_path, routes::ingest_upload,
        routes::get_asset_acl, routes::put_asset_acl, routes::list_rights, routes::add_rights,
        routes::delete_rights, routes::list_tags, routes::list_collections, routes::create_collection,
        routes::get_collection, routes::delete_collection, routes::add_to_collection,
        routes::remove_from_collection, routes::get_collection_acl, routes::put_collection_acl,
        routes::list_users, routes::create_user, routes::me, routes::get_user, routes::patch_user,
        routes::change_password, routes::list_groups, routes::create_group, routes::get_group,
        routes::delete_group, routes::add_member, routes::remove_member, routes::list_tokens,
        routes::create_token, routes::revoke_token, routes::list_audit, routes::verify_audit,
        routes::changes, routes::events, routes::metrics_text, routes::list_jobs, routes::get_job,
        routes::job_logs, routes::cancel_job, routes::retry_job, routes::noop_job,
        routes::list_workflows, routes::run_workflow, routes::asset_qc, routes::asset_verification,
        routes::list_slots,
        routes::restore_gpu,
        mam::list_markers, mam::create_marker, mam::get_marker, mam::patch_marker,
        mam::delete_marker, mam::bulk_edit, mam::list_searches, mam::create_search,
        mam::get_search, mam::patch_search, mam::delete_search, mam::run_search,
        live::list_sources, live::create_source, live::get_source, live::put_source,
        live::delete_source, live::start_source, live::stop_source, live::source_stats,
        live::source_preview,
        live::source_ts, live::list_outputs, live::create_output, live::get_output,
        live::put_output, live::delete_output, live::start_output, live::stop_output, live::switch_output,
        live::output_stats, live::output_hls, live::start_recording, live::stop_recording,
        live::stop_recording_post, live::list_recordings,
        tus::options, tus::create_ingest, tus::create_for_asset, tus::head, tus::patch,
        tus::delete,
        playout::list_channels, playout::create_channel, playout::get_channel, playout::put_channel, playout::delete_channel, playout::get_schedule, playout::put_schedule, playout::append_schedule, playout::edit_schedule, playout::cue, playout::epg_xml, playout::now_next, playout::asrun, playout::start, playout::stop, playout::slate_on, playout::slate_off,
        delivery::list_destinations, delivery::deliver, delivery::list_deliveries,
        delivery::get_delivery, delivery::pull_file,
        review::get_review, review::submit, review::approve, review::reject,
        review::list_comments, review::add_comment, review::approval,
        storage::list_storages, storage::get_storage, storage::storage_events, storage::file_copies,
        storage::restore_file, storage::run_audit, storage::run_policies, storage::retention_dry_run,
        storage::retention_purge, storage::get_hold, storage::put_hold, storage::delete_hold,
        storage::get_tombstone,
        system::system,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail)),
    modifiers(&Security, &ErrorResponses),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let c = api.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Routes answered without a token (and `OPTIONS` of the tus routes).
const PUBLIC_PATHS: &[&str] = &[
    "/health",
    "/ready",
    "/v1/auth/login",
    "/v1/pull/{dest}/{file}/{name}",
];

/// Removes expired resumable uploads until the service stops.
pub async fn sweep_uploads(st: S) {
    tus::sweep(st).await;
}

/// Documents on every operation the error answers it can give, each with the error envelope:
/// 400 (a malformed query, path or body), 401 and 403 (authenticated routes), 404 (an object
/// named in the path), 405 (another method on the path), 409 (a conflicting change), 413 and 415
/// (request bodies), 422 (a well-formed but invalid value), 429 (login rate limit), 503 (starting,
/// stopping, busy or past the request timeout).
struct ErrorResponses;

impl utoipa::Modify for ErrorResponses {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{Operation, ParameterIn};
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        const ANSWERS: &[(&str, &str, &str)] = &[
            ("400", "BadRequest", "malformed request: `invalid_json`, `invalid_query`, `invalid_path`, `invalid_body`, `invalid_header`, `invalid`, `path_not_allowed`"),
            ("401", "Unauthorized", "no valid session or API token (`unauthorized`)"),
            ("403", "Forbidden", "the caller's role or rights do not allow it (`forbidden`, `field_forbidden`), or a cookie-authenticated change that is not JSON"),
            ("404", "NotFound", "no such object, or one the caller may not read (`not_found`)"),
            ("405", "MethodNotAllowed", "the path does not take this method (`method_not_allowed`)"),
            ("409", "Conflict", "a stale `version`, a name in use, a state that does not allow it (`conflict`), or content already in the catalog (`duplicate`)"),
            ("413", "PayloadTooLarge", "the body is over the limit (`payload_too_large`)"),
            ("415", "UnsupportedMediaType", "the body is not sent as `application/json` (`unsupported_media_type`)"),
            ("422", "Unprocessable", "a well-formed request with a value that is not acceptable (`invalid_body`, `invalid_field`, `not_media`)"),
            ("429", "RateLimited", "too many failed logins; `Retry-After` says when to try again (`rate_limited`)"),
            ("503", "Unavailable", "starting, stopping, busy, or past the request timeout (`unavailable`, `timeout`)"),
        ];
        let comps = api.components.get_or_insert_with(Default::default);
        for (_, name, why) in ANSWERS {
            comps.responses.insert(
                (*name).to_string(),
                RefOr::T(
                    ResponseBuilder::new()
                        .description(*why)
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorBody")))
                                .build(),
                        )
                        .build(),
                ),
            );
        }
        for (path, item) in api.paths.paths.iter_mut() {
            let public_path = PUBLIC_PATHS.contains(&path.as_str());
            // (mutating, public): discovery by OPTIONS is public wherever it is served.
            let ops: [(bool, bool, &mut Option<Operation>); 7] = [
                (false, public_path, &mut item.get),
                (false, public_path, &mut item.head),
                (false, true, &mut item.options),
                (true, public_path, &mut item.post),
                (true, public_path, &mut item.put),
                (true, public_path, &mut item.patch),
                (true, public_path, &mut item.delete),
            ];
            for (mutating, public, op) in ops {
                let Some(op) = op.as_mut() else { continue };
                let params = op.parameters.as_deref().unwrap_or_default();
                let has_params = !params.is_empty();
                let has_path = params
                    .iter()
                    .any(|p| matches!(p.parameter_in, ParameterIn::Path));
                let body = op.request_body.as_ref();
                let json_body = body.is_some_and(|b| b.content.contains_key("application/json"));
                let login = path == "/v1/auth/login";
                let counts_logins = login || path == "/v1/users/me/password";
                for (code, name, _) in ANSWERS {
                    let applies = match *code {
                        "400" => has_params || body.is_some(),
                        "401" => !public || login,
                        "403" => !public,
                        "404" => has_path,
                        "405" => true,
                        "409" => mutating && !public,
                        "413" => body.is_some(),
                        "415" => json_body,
                        "422" => has_params || body.is_some(),
                        "429" => counts_logins,
                        _ => path != "/health",
                    };
                    if applies {
                        op.responses
                            .responses
                            .entry((*code).to_string())
                            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(*name)));
                    }
                }
            }
        }
    }
}

/// The whole API.
pub fn router(st: S) -> Router {
    let timeout = Duration::from_secs(u64::from(st.cfg.server.request_timeout_s));
    // Routes answered within the request timeout.
    let bounded = Router::new()
        .route("/metrics", get(routes::metrics_text))
        .route("/v1/auth/logout", post(routes::logout))
        .route(
            "/v1/assets",
            get(routes::list_assets).post(routes::create_asset),
        )
        .route("/v1/search", get(routes::search))
        .route("/v1/assets/bulk-edit", post(mam::bulk_edit))
        .route(
            "/v1/assets/{id}/markers",
            get(mam::list_markers).post(mam::create_marker),
        )
        .route(
            "/v1/assets/{id}/markers/{mid}",
            get(mam::get_marker)
                .patch(mam::patch_marker)
                .delete(mam::delete_marker),
        )
        .route(
            "/v1/searches",
            get(mam::list_searches).post(mam::create_search),
        )
        .route(
            "/v1/searches/{id}",
            get(mam::get_search)
                .patch(mam::patch_search)
                .delete(mam::delete_search),
        )
        .route("/v1/searches/{id}/run", get(mam::run_search))
        .route(
            "/v1/assets/{id}",
            get(routes::get_asset)
                .patch(routes::patch_asset)
                .delete(routes::delete_asset),
        )
        .route(
            "/v1/assets/{id}/acl",
            get(routes::get_asset_acl).put(routes::put_asset_acl),
        )
        .route(
            "/v1/assets/{id}/rights",
            get(routes::list_rights).post(routes::add_rights),
        )
        .route(
            "/v1/assets/{id}/rights/{rid}",
            delete(routes::delete_rights),
        )
        .route("/v1/files/{id}", get(routes::get_file))
        .route("/v1/tags", get(routes::list_tags))
        .route(
            "/v1/collections",
            get(routes::list_collections).post(routes::create_collection),
        )
        .route(
            "/v1/collections/{id}",
            get(routes::get_collection).delete(routes::delete_collection),
        )
        .route(
            "/v1/collections/{id}/assets/{asset_id}",
            put(routes::add_to_collection).delete(routes::remove_from_collection),
        )
        .route(
            "/v1/collections/{id}/acl",
            get(routes::get_collection_acl).put(routes::put_collection_acl),
        )
        .route(
            "/v1/users",
            get(routes::list_users).post(routes::create_user),
        )
        .route("/v1/users/me", get(routes::me))
        .route("/v1/users/me/password", post(routes::change_password))
        .route(
            "/v1/users/{id}",
            get(routes::get_user).patch(routes::patch_user),
        )
        .route(
            "/v1/groups",
            get(routes::list_groups).post(routes::create_group),
        )
        .route(
            "/v1/groups/{id}",
            get(routes::get_group).delete(routes::delete_group),
        )
        .route(
            "/v1/groups/{id}/members/{user_id}",
            put(routes::add_member).delete(routes::remove_member),
        )
        .route(
            "/v1/tokens",
            get(routes::list_tokens).post(routes::create_token),
        )
        .route("/v1/tokens/{id}", delete(routes::revoke_token))
        .route("/v1/audit", get(routes::list_audit))
        .route("/v1/changes", get(routes::changes))
        .route("/v1/jobs", get(routes::list_jobs))
        .route("/v1/jobs/noop", post(routes::noop_job))
        .route("/v1/jobs/{id}", get(routes::get_job))
        .route("/v1/jobs/{id}/logs", get(routes::job_logs))
        .route("/v1/jobs/{id}/cancel", post(routes::cancel_job))
        .route("/v1/jobs/{id}/retry", post(routes::retry_job))
        .route("/v1/slots", get(routes::list_slots))
        .route("/v1/slots/gpus/{id}/restore", post(routes::restore_gpu))
        .route("/v1/workflows", get(routes::list_workflows))
        .route("/v1/workflows/{name}/run", post(routes::run_workflow))
        .route(
            "/v1/live/sources",
            get(live::list_sources).post(live::create_source),
        )
        .route(
            "/v1/live/sources/{id}",
            get(live::get_source)
                .put(live::put_source)
                .delete(live::delete_source),
        )
        .route("/v1/live/sources/{id}/start", post(live::start_source))
        .route("/v1/live/sources/{id}/stop", post(live::stop_source))
        .route("/v1/live/sources/{id}/stats", get(live::source_stats))
        .route(
            "/v1/live/sources/{id}/record",
            post(live::start_recording).delete(live::stop_recording),
        )
        .route(
            "/v1/live/sources/{id}/record/stop",
            post(live::stop_recording_post),
        )
        .route(
            "/v1/live/sources/{id}/recordings",
            get(live::list_recordings),
        )
        .route(
            "/v1/live/sources/{id}/preview.jpg",
            get(live::source_preview),
        )
        .route(
            "/v1/live/outputs",
            get(live::list_outputs).post(live::create_output),
        )
        .route(
            "/v1/live/outputs/{id}",
            get(live::get_output)
                .put(live::put_output)
                .delete(live::delete_output),
        )
        .route("/v1/live/outputs/{id}/start", post(live::start_output))
        .route("/v1/live/outputs/{id}/stop", post(live::stop_output))
        .route("/v1/live/outputs/{id}/switch", post(live::switch_output))
        .route("/v1/live/outputs/{id}/stats", get(live::output_stats))
        .route("/v1/live/outputs/{id}/hls/{*file}", get(live::output_hls))
        .merge(playout::routes())
        .route("/v1/assets/{id}/qc", get(routes::asset_qc))
        .route(
            "/v1/assets/{id}/verification",
            get(routes::asset_verification),
        )
        .merge(delivery::routes())
        .merge(review::routes())
        .merge(system::routes())
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ));
    // Streams, and work proportional to a file's or the log's size: as long as it takes.
    let streaming = Router::new()
        .route(
            "/v1/assets/{id}/files",
            get(routes::list_files).post(routes::register_file),
        )
        .route("/v1/ingest", post(routes::ingest_path))
        .route("/v1/audit/verify", get(routes::verify_audit))
        .route(
            "/v1/assets/{id}/upload",
            post(routes::upload_file).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            "/v1/ingest/upload",
            post(routes::ingest_upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/v1/files/{id}/content", get(routes::file_content))
        .route("/v1/events", get(routes::events))
        .route("/v1/live/sources/{id}/ts", get(live::source_ts))
        .route("/v1/ingest/tus", post(tus::create_ingest))
        .route("/v1/assets/{id}/upload/tus", post(tus::create_for_asset))
        .route(
            "/v1/ingest/tus/{upload}",
            head(tus::head)
                .patch(tus::patch)
                .delete(tus::delete)
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .merge(storage::routes());
    let protected = bounded
        .merge(streaming)
        .route_layer(axum::middleware::from_fn_with_state(st.clone(), audit))
        .route_layer(axum::middleware::from_fn_with_state(
            st.clone(),
            authenticate,
        ));
    // Public: liveness, readiness (for load balancers and systemd helpers: it reveals nothing
    // but ready or not) and the API's description.
    let public = Router::new()
        .route("/health", get(routes::health))
        .route("/ready", get(routes::ready))
        // Discovery of the tus server's capabilities.
        .route("/v1/ingest/tus", options(tus::options))
        .route("/v1/assets/{id}/upload/tus", options(tus::options))
        // The operator panel (its page must load before anyone logs in).
        .merge(crate::web::routes())
        .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ));
    Router::new()
        .merge(public)
        .route(
            "/v1/auth/login",
            post(routes::login)
                .route_layer(axum::middleware::from_fn_with_state(st.clone(), audit)),
        )
        .merge(protected)
        // Signed pull URLs: public, and as long as a transfer takes.
        .merge(delivery::public_routes())
        .fallback(not_found)
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(axum::middleware::from_fn(tus::tus_headers))
        .layer(axum::middleware::from_fn(measure))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| ApiError::internal().into_response(),
        ))
        .with_state(st)
}

/// Marks the service ready (or not) for `/ready`.
pub fn set_ready(st: &AppState, ready: bool) {
    st.ready.store(ready, Ordering::SeqCst);
}
