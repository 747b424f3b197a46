//! Sinks and packages: where a pipeline's output goes. Today the adaptive-streaming package
//! ([`package`]: HLS/DASH texts and the writer that completes and publishes a package); later
//! SRT, UDP, RTMP and live HLS. The atomic file (temporary name, fsync, rename) stays in
//! `av::io`: the engine publishes a run's files together only once every stage has succeeded,
//! and `av` imports nothing of `output`. Imports `av`; never pipeline, catalog, jobs or api.

pub mod package;
pub mod rtmp;
pub mod udp;
