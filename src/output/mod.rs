//! Sinks and packages: where a pipeline's output goes. Today the adaptive-streaming package
//! ([`package`]: HLS/DASH texts and the writer that completes and publishes a package); the atomic
//! file sink is still `av::io`; [`srt`] (caller and listener outputs fed by the hub); later UDP, RTMP
//! and live HLS. Imports `av`, `link` and `srt`; never pipeline, catalog, jobs or api.

pub mod package;
pub mod srt;
