//! The one error envelope of the API and the one place where errors get their status and code.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::catalog::CatalogError;
use crate::hub::registry::LiveError;
use crate::ingest::IngestError;
use crate::storage::{StorageError, StoreError};

/// `{"error": {"code": "...", "message": "..."}}`: `code` is stable, `message` is for people.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub retry_after_s: Option<u64>,
    /// For a 416: the file's length, sent as `Content-Range: bytes */LEN`.
    pub content_range_len: Option<u64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable: `unauthorized`, `forbidden`, `field_forbidden`, `not_found`, `invalid_json`,
    /// `invalid_body`, `invalid_query`, `invalid_path`, `invalid_field`, `unsupported_media_type`,
    /// `conflict`, `duplicate`, `payload_too_large`, `kind_unavailable`, `path_not_allowed`,
    /// `not_media`, `rate_limited`, `method_not_allowed`, `timeout`, `unavailable`, `internal`,
    /// `storage_full` (409), `storage_unavailable` (503), `storage_read_only`, `no_good_copy`; on
    /// deliveries and review also `not_approved` (409; 403 on a pull URL), `nothing_to_deliver`
    /// (409), `bad_signature` and `url_expired` (403, pull URLs); on
    /// the tus routes also `invalid_header`, `unsupported_version` (412) and `checksum_mismatch`
    /// (460).
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after_s: None,
            content_range_len: None,
        }
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid session or API token is required (Authorization: Bearer …)",
        )
    }
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", m)
    }
    pub fn bad(code: &'static str, m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, m)
    }
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the service log has the cause",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                field: self.field,
            },
        };
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"antenne\""),
            );
        }
        if let Some(n) = self.content_range_len {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{n}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
        }
        if let Some(s) = self.retry_after_s {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::NotFound(m) => ApiError::not_found(format!("{m} not found")),
            CatalogError::Forbidden(m) => ApiError::forbidden(m),
            CatalogError::FieldForbidden(f) => ApiError {
                field: Some(f.to_string()),
                ..ApiError::new(
                    StatusCode::FORBIDDEN,
                    "field_forbidden",
                    format!("field {f:?} may not be set by this role"),
                )
            },
            CatalogError::Invalid { field, why } => ApiError {
                message: format!("{field}: {why}"),
                field: Some(field),
                ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "")
            },
            CatalogError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            e @ CatalogError::Duplicate { .. } => {
                ApiError::new(StatusCode::CONFLICT, "duplicate", e.to_string())
            }
            // A value the database will not store (PostgreSQL: a NUL byte, a number out of
            // range): the client's input, SQLSTATE class 22.
            CatalogError::Db(sqlx::Error::Database(d))
                if d.code().is_some_and(|c| c.starts_with("22")) =>
            {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_field",
                    format!("a value cannot be stored: {}", d.message()),
                )
            }
            CatalogError::Db(sqlx::Error::PoolTimedOut) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the catalog database is busy; retry",
            ),
            e => {
                tracing::error!(error = %e, "catalog");
                ApiError::internal()
            }
        }
    }
}

impl ApiError {
    /// An ingest error as the client sees it: the file is named `shown` (the client's own name
    /// for it), never by the path where the appliance keeps it; the full error goes to the log.
    pub fn from_ingest(e: IngestError, shown: &str) -> Self {
        match e {
            IngestError::NotMedia {
                ref path,
                ref source,
            } => {
                tracing::info!(path = %path, error = %source, "ingest: not media");
                let reason = source.reason().replace(path.as_str(), shown);
                let reason = scrub_paths(&reason);
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "not_media",
                    format!("{shown}: {reason}"),
                )
            }
            e => ApiError::from(e),
        }
    }
}

/// Whatever still looks like an absolute path in a message for a client (a libav message that
/// names a file, say) is cut to its last component.
fn scrub_paths(m: &str) -> String {
    m.split(' ')
        .map(|w| {
            let core = w.trim_start_matches(['(', '\'', '"']);
            if core.starts_with('/') && core.len() > 1 {
                let lead = &w[..w.len() - core.len()];
                let last = core.rsplit('/').next().unwrap_or_default();
                format!("{lead}{last}")
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl From<LiveError> for ApiError {
    fn from(e: LiveError) -> Self {
        match e {
            LiveError::Invalid { ref field, .. } => ApiError {
                field: Some(field.clone()),
                ..ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_field",
                    e.to_string(),
                )
            },
            LiveError::Missing { .. } | LiveError::NotBuilt { .. } => ApiError {
                field: Some("kind".into()),
                ..ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "kind_unavailable",
                    e.to_string(),
                )
            },
            LiveError::NotFound(m) => ApiError::not_found(format!("{m} not found")),
            LiveError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            LiveError::Start { .. } => {
                tracing::warn!(error = %e, "live: transport did not start");
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            LiveError::Catalog(c) => ApiError::from(c),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Path { .. } => ApiError {
                field: Some("path".into()),
                ..ApiError::bad("path_not_allowed", e.to_string())
            },
            IngestError::TooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                e.to_string(),
            ),
            e @ IngestError::NotMedia { .. } => ApiError::from_ingest(e, "the file"),
            IngestError::Upload(_) => ApiError::bad("invalid_body", e.to_string()),
            IngestError::Io { .. } => {
                tracing::error!(error = %e, "ingest");
                ApiError::internal()
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            // The appliance is sound and says why it refuses: the caller retries later or
            // elsewhere, as with any conflict with the appliance's state.
            StoreError::Full { .. } => {
                ApiError::new(StatusCode::CONFLICT, "storage_full", e.to_string())
            }
            StoreError::ReadOnly(_) => {
                ApiError::new(StatusCode::CONFLICT, "storage_read_only", e.to_string())
            }
            StoreError::Missing { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            // The messages name the storage and the cause, never a credential.
            StoreError::Unavailable { .. } | StoreError::Io { .. } | StoreError::Invalid { .. } => {
                tracing::warn!(error = %e, "storage");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    e.to_string(),
                )
            }
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Store(s) => ApiError::from(s),
            StorageError::Catalog(c) => ApiError::from(c),
            StorageError::UnknownStorage(_) | StorageError::NoFile(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            StorageError::NoGoodCopy { .. } | StorageError::Unverified { .. } => {
                ApiError::new(StatusCode::CONFLICT, "no_good_copy", e.to_string())
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonSyntaxError(e) => {
                ApiError::bad("invalid_json", format!("the body is not JSON: {e}"))
            }
            JsonRejection::JsonDataError(e) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                std::error::Error::source(&e)
                    .map_or_else(|| e.to_string(), |s| s.to_string())
                    .to_string(),
            ),
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as Content-Type: application/json",
            ),
            JsonRejection::BytesRejection(e) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body cannot be read: {e}"),
            ),
            other => ApiError::bad("invalid_body", other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad("invalid_query", r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::bad("invalid_path", r.body_text())
    }
}
