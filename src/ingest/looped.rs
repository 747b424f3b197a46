//! A media file played as a live source: remuxed to MPEG-TS (no decode) and paced at real time,
//! from the start again at each end with continuous timestamps and continuity counters, delivered
//! to a [`ChunkSink`] in chunks of seven TS packets. For tests, slates and rehearsals.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::link::{Chunk, ChunkSink, Link, LinkCounters, LinkState, LinkStats, TS_PACKET};

/// Bytes per delivered chunk: seven TS packets.
const CHUNK: usize = 7 * TS_PACKET;
/// How long a file that failed waits before it is tried again.
const RETRY: Duration = Duration::from_secs(2);

/// A running looped file.
pub struct LoopedInput {
    counters: Arc<LinkCounters>,
    passes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl LoopedInput {
    pub fn start(path: PathBuf, sink: Arc<dyn ChunkSink>) -> Result<LoopedInput, std::io::Error> {
        let counters = Arc::new(LinkCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let passes = Arc::new(AtomicU64::new(0));
        let (c, s, n) = (counters.clone(), stop.clone(), passes.clone());
        let thread = std::thread::Builder::new()
            .name("file-loop".into())
            .spawn(move || run(&path, sink, &c, &s, &n))?;
        Ok(LoopedInput {
            counters,
            passes,
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Passes over the file begun so far.
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::Relaxed)
    }
}

fn run(
    path: &std::path::Path,
    sink: Arc<dyn ChunkSink>,
    counters: &Arc<LinkCounters>,
    stop: &AtomicBool,
    passes: &AtomicU64,
) {
    while !stop.load(Ordering::Relaxed) {
        let out = TsWriter::new(sink.clone(), counters.clone());
        let r = crate::av::remux::loop_ts(path, out, stop, |_| {
            passes.fetch_add(1, Ordering::Relaxed);
        });
        if let Err(e) = r {
            tracing::warn!(path = %path.display(), error = %e, "file loop");
            counters.error(e.to_string());
            counters.set_state(LinkState::Lost);
            let mut waited = Duration::ZERO;
            while waited < RETRY && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                waited += Duration::from_millis(50);
            }
        }
    }
}

/// The muxer's bytes, cut into whole TS packets and delivered seven at a time; the first makes
/// the link live. Shared by every source that remuxes to TS (a looped file, RTMP, HLS).
pub(crate) struct TsWriter {
    sink: Arc<dyn ChunkSink>,
    counters: Arc<LinkCounters>,
    buf: Vec<u8>,
}

impl TsWriter {
    pub(crate) fn new(sink: Arc<dyn ChunkSink>, counters: Arc<LinkCounters>) -> TsWriter {
        TsWriter {
            sink,
            counters,
            buf: Vec::with_capacity(CHUNK * 2),
        }
    }
}

impl Write for TsWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        let whole = self.buf.len() / CHUNK * CHUNK;
        if whole > 0 {
            if self.counters.state() != LinkState::Live {
                self.counters.set_state(LinkState::Live);
            }
            for c in self.buf[..whole].chunks(CHUNK) {
                self.counters
                    .received(c.len(), (c.len() / TS_PACKET) as u64);
                self.sink.deliver(Chunk::copy_from_slice(c));
            }
            self.buf.drain(..whole);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let whole = self.buf.len() / TS_PACKET * TS_PACKET;
        if whole > 0 {
            self.counters.received(whole, (whole / TS_PACKET) as u64);
            self.sink
                .deliver(Chunk::copy_from_slice(&self.buf[..whole]));
            self.buf.drain(..whole);
        }
        Ok(())
    }
}

impl Link for LoopedInput {
    fn stats(&self) -> LinkStats {
        self.counters.snapshot()
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
        self.counters.set_state(LinkState::Stopped);
    }
}

impl Drop for LoopedInput {
    fn drop(&mut self) {
        self.stop();
    }
}
