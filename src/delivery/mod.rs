//! Delivery formats and destinations; today the adaptive-streaming texts: HLS playlists and the
//! DASH manifest that serves the same fMP4 renditions. Pure: imports nothing from `av`.

pub mod dash;
pub mod hls;
