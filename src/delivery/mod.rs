//! Destinations: folder delivery ([`folder`], the workflows' plain copy) and declared
//! destinations ([`transfer`] over a folder or [`sftp`]; [`pull`] URLs signed for playout
//! systems), file names from a destination's template ([`name`]), sidecar manifests
//! ([`manifest`]), and e-mail notifications ([`smtp`]).
//! Blocking code run in worker processes or off the async runtime. Imports `config` (the
//! destination's declaration) only: no `av`, catalog, jobs or api; no tokio, SQL or libav.

pub mod folder;
pub mod manifest;
pub mod name;
pub mod pull;
pub mod sftp;
pub mod smtp;
pub mod transfer;
