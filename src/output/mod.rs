//! Sinks and packages: where a pipeline's output goes. Owns the atomic file ([`file`]:
//! temporary name, fsync, rename; handed to the engine as an `av::io::Publish`, which publishes
//! a run's files together once every stage has succeeded); the adaptive-streaming package
//! ([`package`]: HLS/DASH texts and the writer that completes and publishes a package); live
//! MPEG-TS cut into whole-packet chunks for live transports ([`ts`]) and live HLS windows and
//! master playlists ([`live_hls`]); the live transports fed by the hub or a live pipeline:
//! [`srt`] (caller and listener outputs), [`udp`] (UDP/RTP, unicast or multicast) and [`rtmp`]
//! (push).
//!
//! Imports `av` (the sink types it implements and feeds), `link` and `srt`; never pipeline,
//! profile, catalog, jobs, hub or api. `av` must not import `output`.

pub mod file;
pub mod live_hls;
pub mod package;
pub mod rtmp;
pub mod srt;
pub mod ts;
pub mod udp;
