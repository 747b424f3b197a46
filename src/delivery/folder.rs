//! Folder delivery: copies files into a destination folder, each as `<name>.part`, fsynced, then
//! renamed, and the folder synced. Blocking `std::fs`: callers run it in a worker process or off
//! the async runtime. Imports nothing of the crate (no catalog, jobs or api; no tokio, SQL or
//! libav).

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("deliver: `to` is not an absolute folder")]
    NotAbsolute,
    #[error("{0}: no file name")]
    NoFileName(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Copies `files` into the absolute folder `to` (made if missing), calling `delivered` with each
/// destination once it is in place; returns the destinations.
pub fn deliver<'a>(
    to: &Path,
    files: impl IntoIterator<Item = &'a str>,
    mut delivered: impl FnMut(&Path),
) -> Result<Vec<PathBuf>, FolderError> {
    if !to.is_absolute() {
        return Err(FolderError::NotAbsolute);
    }
    std::fs::create_dir_all(to)?;
    let mut done = Vec::new();
    for f in files {
        let src = Path::new(f);
        let name = src
            .file_name()
            .ok_or_else(|| FolderError::NoFileName(f.to_string()))?;
        let dest = to.join(name);
        let mut part = dest.clone().into_os_string();
        part.push(".part");
        let part = PathBuf::from(part);
        std::fs::copy(src, &part)?;
        std::fs::File::open(&part)?.sync_all()?;
        std::fs::rename(&part, &dest)?;
        delivered(&dest);
        done.push(dest);
    }
    if let Ok(d) = std::fs::File::open(to) {
        let _ = d.sync_all();
    }
    Ok(done)
}
