//! What a declared destination takes of an asset, for the API (`POST …/deliveries`) and for a
//! workflow's `deliver` step that names a destination: each rendition it takes with its name
//! there, the approval a destination may require, the sidecar manifests, and the job's items.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Value};

use crate::catalog::assets::FileRec;
use crate::catalog::review::Approval;
use crate::catalog::{Catalog, CatalogError, Principal};
use crate::config::delivery::Destination;
use crate::delivery::{manifest, name};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The destination takes none of the asset's renditions.
    #[error("{0}")]
    Nothing(String),
    /// Two files would get one name there.
    #[error("{0}")]
    Clash(String),
    #[error("{0}")]
    NotApproved(String),
}

/// The files a destination takes of an asset: (file id, its name there, the file).
pub struct Plan {
    pub files: Vec<(i64, String, FileRec)>,
    /// The asset's metadata, for the manifests.
    pub meta: Value,
}

/// What `d` takes of asset `asset_id`, as `who` may see it. A rendition whose file is not on
/// the online storage is taken when another storage holds a good copy (the delivery job brings
/// it back first).
pub async fn plan(
    catalog: &Catalog,
    media_dir: &Path,
    who: &Principal,
    asset_id: i64,
    d: &Destination,
) -> Result<Plan, PlanError> {
    let asset = catalog.asset(who, asset_id).await?;
    let files = catalog.files(who, asset_id).await?;
    let (y, m, day) = {
        let t = time::OffsetDateTime::from_unix_timestamp(catalog.now_ms() / 1000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        (t.year(), u8::from(t.month()), t.day())
    };
    let mut out = Vec::new();
    for f in files {
        if f.role == "source" || !(d.profiles.is_empty() || d.profiles.contains(&f.profile)) {
            continue;
        }
        if !Path::new(&f.path).is_file()
            && !catalog
                .copies_of_file(f.id)
                .await?
                .iter()
                .any(|c| c.state == "ok")
        {
            continue;
        }
        // The name a client sees (uploads are stored under a content-hash prefix).
        let shown = name::shown(&f.path, &f.sha256, media_dir);
        let p = Path::new(&shown);
        let mut fields = name::Fields::new();
        fields.insert("house_id", asset.house_id.clone());
        fields.insert("title", asset.title.clone());
        fields.insert("profile", f.profile.clone());
        fields.insert("asset_id", asset.id.to_string());
        let fname = p.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        fields.insert("name", fname.to_string());
        fields.insert(
            "stem",
            p.file_stem()
                .and_then(|n| n.to_str())
                .unwrap_or("file")
                .into(),
        );
        fields.insert(
            "ext",
            p.extension().and_then(|n| n.to_str()).unwrap_or("").into(),
        );
        fields.insert("yyyy", format!("{y:04}"));
        fields.insert("mm", format!("{m:02}"));
        fields.insert("dd", format!("{day:02}"));
        out.push((f.id, name::render(d.naming(), &fields), f));
    }
    if out.is_empty() {
        return Err(PlanError::Nothing(format!(
            "asset {asset_id} has no rendition that destination {:?} takes (profiles: {})",
            d.name,
            if d.profiles.is_empty() {
                "any".to_string()
            } else {
                d.profiles.join(", ")
            }
        )));
    }
    let mut names = BTreeSet::new();
    for (_, n, _) in &out {
        if !names.insert(n.clone()) {
            return Err(PlanError::Clash(format!(
                "destination {:?}: two files would both be named {n:?}: its naming template \
                 must tell them apart (e.g. with {{profile}})",
                d.name
            )));
        }
    }
    let mut meta = serde_json::to_value(&asset).unwrap_or(Value::Null);
    if let Some(o) = meta.as_object_mut() {
        o.remove("access");
        o.remove("version");
    }
    Ok(Plan { files: out, meta })
}

impl Plan {
    /// A destination that requires approval takes the asset approved as a whole, or else each
    /// rendition that goes approved.
    pub async fn check_approval(
        &self,
        catalog: &Catalog,
        asset_id: i64,
        d: &Destination,
    ) -> Result<(), PlanError> {
        if !d.require_approval {
            return Ok(());
        }
        if let Approval::NotApproved { reason } = catalog.is_approved(asset_id).await? {
            for (fid, _, _) in &self.files {
                if !catalog
                    .is_approved_file(asset_id, *fid)
                    .await?
                    .is_approved()
                {
                    return Err(PlanError::NotApproved(format!(
                        "destination {:?} takes approved material only: {reason}",
                        d.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// What the delivery record lists: each file's id, name there, size, hash and profile.
    pub fn listed(&self) -> Value {
        json!(self
            .files
            .iter()
            .map(|(fid, n, f)| {
                json!({"file_id": fid, "name": n, "size": f.size, "sha256": f.sha256, "profile": f.profile})
            })
            .collect::<Vec<_>>())
    }

    /// The delivery job's items: the files, then the destination's sidecar manifests.
    pub fn items(&self, d: &Destination) -> Vec<Value> {
        let entries: Vec<manifest::Entry> = self
            .files
            .iter()
            .map(|(_, n, f)| manifest::Entry {
                name: n.clone(),
                profile: f.profile.clone(),
                size: f.size.max(0) as u64,
                sha256: f.sha256.clone(),
            })
            .collect();
        let mut items: Vec<Value> = self
            .files
            .iter()
            .map(|(_, n, f)| {
                json!({"name": n, "path": f.path, "size": f.size, "sha256": f.sha256, "profile": f.profile})
            })
            .collect();
        let house = self.meta["house_id"]
            .as_str()
            .unwrap_or("asset")
            .to_string();
        for kind in &d.manifests {
            let bytes = if kind == "xml" {
                manifest::xml(&self.meta, &d.name, &entries)
            } else {
                manifest::json(&self.meta, &d.name, &entries)
            };
            let hash = {
                use sha2::Digest;
                sha2::Sha256::digest(&bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            };
            items.push(json!({
                "name": name::render(&format!("{house}.manifest.{kind}"), &name::Fields::new()),
                "content": String::from_utf8_lossy(&bytes),
                "size": bytes.len(),
                "sha256": hash,
            }));
        }
        items
    }
}
