//! Destinations: folder delivery ([`folder`]); later S3, SFTP, pull and manifests, catalog sync.
//! Imports nothing of the crate: no `av`, catalog, jobs or api.

pub mod folder;
