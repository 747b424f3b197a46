//! The operator panel: a single page of plain ES modules and CSS, embedded in the binary and
//! served at `/` with its security headers. It talks to the appliance only through the public
//! `/v1` API (the browser's session cookie), so it never sees more than its user may. Owns the
//! embedded assets and the routes that serve them; imports nothing of the crate.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// No inline script or style, nothing from another origin, never framed.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; font-src 'self'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The header the panel's non-JSON uploads carry so that the API takes them by cookie.
pub const UPLOAD_HEADER: &str = "antenne-panel";

/// Path under `/panel/` → (content type, body).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("assets/style.css"),
    ),
    ("js/app.js", JS, include_str!("assets/js/app.js")),
    ("js/api.js", JS, include_str!("assets/js/api.js")),
    ("js/dom.js", JS, include_str!("assets/js/dom.js")),
    ("js/events.js", JS, include_str!("assets/js/events.js")),
    ("js/login.js", JS, include_str!("assets/js/login.js")),
    (
        "js/dashboard.js",
        JS,
        include_str!("assets/js/dashboard.js"),
    ),
    ("js/catalog.js", JS, include_str!("assets/js/catalog.js")),
    ("js/asset.js", JS, include_str!("assets/js/asset.js")),
    ("js/ingest.js", JS, include_str!("assets/js/ingest.js")),
    ("js/uploads.js", JS, include_str!("assets/js/uploads.js")),
    ("js/jobs.js", JS, include_str!("assets/js/jobs.js")),
    ("js/live.js", JS, include_str!("assets/js/live.js")),
    ("js/playout.js", JS, include_str!("assets/js/playout.js")),
    ("js/storage.js", JS, include_str!("assets/js/storage.js")),
    ("js/admin.js", JS, include_str!("assets/js/admin.js")),
];

const JS: &str = "text/javascript; charset=utf-8";
const INDEX: &str = include_str!("assets/index.html");

/// The headers every panel answer carries.
fn secured(mut r: Response, cache: &'static str) -> Response {
    let h = r.headers_mut();
    let set: [(HeaderName, &'static str); 6] = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, cache),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    for (k, v) in set {
        h.insert(k, HeaderValue::from_static(v));
    }
    r
}

async fn index() -> Response {
    secured(
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response(),
        "no-cache",
    )
}

async fn asset(axum::extract::Path(path): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|(p, _, _)| *p == path) {
        // Assets change with the binary: revalidated each load (cheap on loopback), never stale.
        Some((_, ct, body)) => secured(
            ([(header::CONTENT_TYPE, *ct)], *body).into_response(),
            "no-cache",
        ),
        None => secured(
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "no such panel file",
            )
                .into_response(),
            "no-store",
        ),
    }
}

/// `/` (the page) and `/panel/*` (its modules and style); public, as the login screen must be.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/panel/{*path}", get(asset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_embedded() {
        for (_, _, body) in ASSETS.iter().chain([("index.html", "", INDEX)].iter()) {
            for line in body.lines() {
                let Some(i) = line.find("from \"./") else {
                    continue;
                };
                let name = line[i + 8..].split('"').next().unwrap_or_default();
                assert!(
                    ASSETS.iter().any(|(p, _, _)| *p == format!("js/{name}")),
                    "js/{name} is imported but not embedded"
                );
            }
        }
    }

    #[test]
    fn no_script_writes_html() {
        for (p, _, body) in ASSETS {
            for bad in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ] {
                assert!(!body.contains(bad), "{p} uses {bad}");
            }
        }
        assert!(!INDEX.contains("<script>") && !INDEX.contains("style="));
    }
}
