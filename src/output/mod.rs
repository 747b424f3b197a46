//! Sinks and packages: where a pipeline's output goes. The adaptive-streaming package
//! ([`package`]: HLS/DASH texts and the writer that completes and publishes a package); live
//! MPEG-TS cut into whole-packet chunks for live transports ([`ts`]) and live HLS windows and
//! master playlists ([`live_hls`]); the live transports fed by the hub or a live pipeline:
//! [`srt`] (caller and listener outputs), [`udp`] (UDP/RTP, unicast or multicast) and [`rtmp`]
//! (push). The atomic
//! file (temporary name, fsync, rename) stays in `av::io`: the engine publishes a run's files
//! together only once every stage has succeeded, and `av` imports nothing of `output`. Imports
//! `av`, `link` and `srt`; never pipeline, catalog, jobs or api.

pub mod live_hls;
pub mod package;
pub mod rtmp;
pub mod srt;
pub mod ts;
pub mod udp;
