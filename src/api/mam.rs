//! Markers and sub-clips, bulk edit over a selection, saved searches.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ErrorBody;
use super::routes::{Page, SearchPage};
use super::{ApiError, Body, Caller, Path, Query, S};
use crate::catalog::assets::AssetInput;
use crate::catalog::mam::{Marker, MarkerInput, SavedSearch, SavedSearchInput};
use crate::catalog::CatalogError;

type Res<T> = Result<T, ApiError>;

fn created<T: Serialize>(v: T) -> Response {
    (StatusCode::CREATED, axum::Json(v)).into_response()
}

// ---- markers ----

/// The markers and sub-clips of an asset, in timecode order.
#[utoipa::path(get, path = "/v1/assets/{id}/markers", tag = "markers", params(("id" = i64, Path)),
    responses((status = 200, body = Page<Marker>), (status = 404, body = ErrorBody)))]
pub async fn list_markers(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<Page<Marker>>> {
    Ok(axum::Json(Page {
        items: st.catalog.markers(&c.0, id).await?,
        next: None,
    }))
}

/// Adds a marker (`tc_in`) or a sub-clip (`tc_in` to `tc_out`); timecodes count in the asset's
/// frame rate (of its source's video) and must fall within its media. Needs write access.
#[utoipa::path(post, path = "/v1/assets/{id}/markers", tag = "markers", params(("id" = i64, Path)),
    request_body = MarkerInput,
    responses((status = 201, body = Marker), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the asset has no video yet"), (status = 422, body = ErrorBody)))]
pub async fn create_marker(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    Body(i): Body<MarkerInput>,
) -> Res<Response> {
    Ok(created(st.catalog.put_marker(&c.0, id, None, &i).await?))
}

#[utoipa::path(get, path = "/v1/assets/{id}/markers/{mid}", tag = "markers",
    params(("id" = i64, Path), ("mid" = i64, Path)),
    responses((status = 200, body = Marker), (status = 404, body = ErrorBody)))]
pub async fn get_marker(
    State(st): State<S>,
    c: Caller,
    Path((id, mid)): Path<(i64, i64)>,
) -> Res<axum::Json<Marker>> {
    Ok(axum::Json(st.catalog.marker(&c.0, id, mid).await?))
}

/// Changes a marker: the fields given; `"tc_out": ""` makes a sub-clip a point marker.
#[utoipa::path(patch, path = "/v1/assets/{id}/markers/{mid}", tag = "markers",
    params(("id" = i64, Path), ("mid" = i64, Path)), request_body = MarkerInput,
    responses((status = 200, body = Marker), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn patch_marker(
    State(st): State<S>,
    c: Caller,
    Path((id, mid)): Path<(i64, i64)>,
    Body(i): Body<MarkerInput>,
) -> Res<axum::Json<Marker>> {
    Ok(axum::Json(
        st.catalog.put_marker(&c.0, id, Some(mid), &i).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/assets/{id}/markers/{mid}", tag = "markers",
    params(("id" = i64, Path), ("mid" = i64, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_marker(
    State(st): State<S>,
    c: Caller,
    Path((id, mid)): Path<(i64, i64)>,
) -> Res<StatusCode> {
    st.catalog.delete_marker(&c.0, id, mid).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- bulk edit ----

/// One asset of a selection, at the version the client read.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkItem {
    pub id: i64,
    /// The version read: an asset changed since is refused (`conflict`), the others go on.
    pub version: i64,
}

/// The same change to every asset of a selection.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkEdit {
    /// 1-500 assets.
    pub assets: Vec<BulkItem>,
    /// Metadata to set (as `PATCH /v1/assets/{id}` takes it; no `house_id`, `tags` or
    /// `version` here).
    #[serde(default)]
    pub set: Option<AssetInput>,
    /// Tags to add to each asset.
    #[serde(default)]
    pub add_tags: Vec<String>,
    /// Tags to take off each asset.
    #[serde(default)]
    pub remove_tags: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkDone {
    pub id: i64,
    /// The version after the change.
    pub version: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkRefused {
    pub id: i64,
    /// The error code the single edit would have answered: `not_found`, `forbidden`,
    /// `field_forbidden`, `conflict`, `invalid_field`.
    pub code: String,
    pub message: String,
}

/// What a bulk edit did: each asset changed, or refused and why.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkReport {
    pub updated: Vec<BulkDone>,
    pub refused: Vec<BulkRefused>,
}

const BULK_ACTION: &str = "POST /v1/assets/bulk-edit";

/// Edits the metadata and tags of a selection of assets: each one is changed on its own (its
/// own version check, its own audit entry, its own change-feed entry), so that one refusal
/// does not hold up the others; the answer says which were refused and why.
#[utoipa::path(post, path = "/v1/assets/bulk-edit", tag = "assets", request_body = BulkEdit,
    responses((status = 200, body = BulkReport), (status = 422, body = ErrorBody)))]
pub async fn bulk_edit(
    State(st): State<S>,
    c: Caller,
    Body(b): Body<BulkEdit>,
) -> Res<axum::Json<BulkReport>> {
    if b.assets.is_empty() || b.assets.len() > 500 {
        return Err(CatalogError::invalid("assets", "1 to 500 assets").into());
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = b.assets.iter().find(|i| !seen.insert(i.id)) {
        return Err(CatalogError::invalid("assets", format!("asset {} twice", dup.id)).into());
    }
    let set = b.set.unwrap_or_default();
    if set.house_id.is_some() || set.tags.is_some() || set.version.is_some() {
        return Err(CatalogError::invalid(
            "set",
            "house_id, tags and version are not set in bulk (use add_tags, remove_tags and \
             each asset's version)",
        )
        .into());
    }
    let sets_nothing = set.kind.is_none()
        && set.status.is_none()
        && [
            "title",
            "description",
            "subject",
            "creator",
            "contributor",
            "date",
            "language",
            "rights",
            "identifier",
            "series",
            "episode",
        ]
        .iter()
        .all(|f| set.dc(f).is_none())
        && set.custom.is_none()
        && set.owner_id.is_none();
    if sets_nothing && b.add_tags.is_empty() && b.remove_tags.is_empty() {
        return Err(CatalogError::invalid(
            "set",
            "nothing to change: give set, add_tags or remove_tags",
        )
        .into());
    }
    let clean = |v: &[String], field: &str| -> Res<Vec<String>> {
        if v.len() > 64 {
            return Err(CatalogError::invalid(field, "at most 64 tags").into());
        }
        v.iter()
            .map(|t| {
                let t = t.trim().to_lowercase();
                if t.is_empty() || t.len() > 100 || t.chars().any(char::is_control) {
                    Err(CatalogError::invalid(field, format!("{t:?} is not a tag")).into())
                } else {
                    Ok(t)
                }
            })
            .collect()
    };
    let add = clean(&b.add_tags, "add_tags")?;
    let remove = clean(&b.remove_tags, "remove_tags")?;
    let mut report = BulkReport {
        updated: Vec::new(),
        refused: Vec::new(),
    };
    for item in &b.assets {
        let object = format!("/v1/assets/{}", item.id);
        crate::catalog::log::audit_next(object.clone(), "bulk edit".into());
        let outcome = async {
            let mut i = set.clone();
            i.version = Some(item.version);
            if !add.is_empty() || !remove.is_empty() {
                let (version, mut tags) = st.catalog.version_and_tags(&c.0, item.id).await?;
                if version != item.version {
                    return Err(CatalogError::Conflict(format!(
                        "asset {} is at version {version}, not {}",
                        item.id, item.version
                    )));
                }
                tags.retain(|t| !remove.contains(t));
                for t in &add {
                    if !tags.contains(t) {
                        tags.push(t.clone());
                    }
                }
                i.tags = Some(tags);
            }
            st.catalog.update_asset(&c.0, item.id, &i).await
        }
        .await;
        match outcome {
            Ok(a) => report.updated.push(BulkDone {
                id: item.id,
                version: a.version,
            }),
            Err(e) => {
                let e = ApiError::from(e);
                if e.status.is_server_error() {
                    return Err(e);
                }
                // A refused item: recorded best-effort, as a refused request is.
                let result = format!("refused {}", e.status.as_u16());
                if let Err(err) = st
                    .catalog
                    .audit(Some(&c.0), BULK_ACTION, &object, &result, &e.message)
                    .await
                {
                    tracing::error!(error = %err, "audit log: cannot append");
                }
                report.refused.push(BulkRefused {
                    id: item.id,
                    code: e.code.to_string(),
                    message: e.message,
                });
            }
        }
    }
    Ok(axum::Json(report))
}

// ---- saved searches ----

/// The caller's saved searches, by name.
#[utoipa::path(get, path = "/v1/searches", tag = "searches",
    responses((status = 200, body = Page<SavedSearch>)))]
pub async fn list_searches(State(st): State<S>, c: Caller) -> Res<axum::Json<Page<SavedSearch>>> {
    Ok(axum::Json(Page {
        items: st.catalog.saved_searches(&c.0).await?,
        next: None,
    }))
}

/// Saves a search (the parameters of `GET /v1/search`) under a name, for the caller only.
#[utoipa::path(post, path = "/v1/searches", tag = "searches", request_body = SavedSearchInput,
    responses((status = 201, body = SavedSearch), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_search(
    State(st): State<S>,
    c: Caller,
    Body(i): Body<SavedSearchInput>,
) -> Res<Response> {
    Ok(created(st.catalog.put_saved_search(&c.0, None, &i).await?))
}

#[utoipa::path(get, path = "/v1/searches/{id}", tag = "searches", params(("id" = i64, Path)),
    responses((status = 200, body = SavedSearch), (status = 404, body = ErrorBody)))]
pub async fn get_search(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
) -> Res<axum::Json<SavedSearch>> {
    Ok(axum::Json(st.catalog.saved_search(&c.0, id).await?))
}

/// Renames a saved search or changes its query.
#[utoipa::path(patch, path = "/v1/searches/{id}", tag = "searches", params(("id" = i64, Path)),
    request_body = SavedSearchInput,
    responses((status = 200, body = SavedSearch), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn patch_search(
    State(st): State<S>,
    c: Caller,
    Path(id): Path<i64>,
    Body(i): Body<SavedSearchInput>,
) -> Res<axum::Json<SavedSearch>> {
    Ok(axum::Json(
        st.catalog.put_saved_search(&c.0, Some(id), &i).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/searches/{id}", tag = "searches", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_search(State(st): State<S>, c: Caller, Path(id): Path<i64>) -> Res<StatusCode> {
    st.catalog.delete_saved_search(&c.0, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Paging of a saved search's run.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    /// 1-200, default 50.
    pub limit: Option<i64>,
    /// The `next` of the previous page.
    pub after: Option<i64>,
}

/// Runs a saved search: the same answer as `GET /v1/search` with its parameters, restricted
/// to what the caller may read now.
#[utoipa::path(get, path = "/v1/searches/{id}/run", tag = "searches", params(("id" = i64, Path), RunQuery),
    responses((status = 200, body = SearchPage), (status = 404, body = ErrorBody)))]
pub async fn run_search(
    st: State<S>,
    c: Caller,
    Path(id): Path<i64>,
    Query(r): Query<RunQuery>,
) -> Res<axum::Json<SearchPage>> {
    let q = st
        .catalog
        .saved_search_query(&c.0, id, r.limit, r.after)
        .await?;
    super::routes::list_assets(st, c, super::Query(q)).await
}
