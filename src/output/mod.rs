//! Sinks and packages: where a pipeline's output goes. Today the adaptive-streaming package
//! ([`package`]: HLS/DASH texts and the writer that completes and publishes a package); the atomic
//! file sink is still `av::io`; later SRT, UDP, RTMP and live HLS. Imports `av`; never pipeline,
//! catalog, jobs or api.

pub mod package;
pub mod udp;
