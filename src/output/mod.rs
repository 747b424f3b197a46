//! Sinks and packages: where a pipeline's output goes. The adaptive-streaming package
//! ([`package`]: HLS/DASH texts and the writer that completes and publishes a package), live
//! MPEG-TS cut into whole-packet chunks for live transports ([`ts`]), and live HLS windows and
//! master playlists ([`live_hls`]); the atomic file sink is still `av::io`. Imports `av` and
//! `link`; never pipeline, catalog, jobs or api.

pub mod live_hls;
pub mod package;
pub mod ts;
