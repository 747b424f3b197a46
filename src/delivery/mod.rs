//! Delivery formats and destinations: folder delivery ([`folder`]); later S3, SFTP, pull and
//! manifests; today also the adaptive-streaming texts (HLS playlists and the DASH manifest).
//! Imports nothing of the crate: no `av`, catalog, jobs or api.

pub mod dash;
pub mod folder;
pub mod hls;
