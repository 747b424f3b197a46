//! RTMP push: a source's MPEG-TS rewrapped as FLV (no decode) and pushed to `rtmp://host/app/key`
//! by libav's own RTMP client. Chunks queue (bounded: a full queue drops and counts, `deliver`
//! never blocks); when the server refuses or drops the connection it is tried again with a
//! back-off (1 s doubling to 30 s), the chunks that arrive meanwhile are dropped and counted, and
//! the push resumes from the live edge.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use crate::av::io::{ByteSource, ChannelReader};
use crate::av::remux::{remux_stream, RemuxTarget};
use crate::link::{Chunk, ChunkSink, Link, LinkCounters, LinkState, LinkStats, TS_PACKET};

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A push that ran this long before failing starts its back-off from the beginning.
const STEADY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RtmpOutError {
    #[error("cannot start a thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// A running RTMP push: a [`ChunkSink`] and a [`Link`].
pub struct RtmpOutput {
    tx: Sender<Vec<u8>>,
    counters: Arc<LinkCounters>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The URL with its last path element (the stream key) hidden, for messages.
pub fn redact(url: &str) -> String {
    match url.rsplit_once('/') {
        Some((head, _)) if head.matches('/').count() >= 3 => format!("{head}/********"),
        _ => url.to_string(),
    }
}

impl RtmpOutput {
    /// `url`: the full `rtmp://host[:port]/app/key`; `queue`: chunks held before dropping.
    pub fn start(url: String, queue: usize) -> Result<RtmpOutput, RtmpOutError> {
        let (tx, rx) = bounded(queue.max(16));
        let counters = Arc::new(LinkCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (counters.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("rtmp-push".into())
            .spawn(move || run(&url, &rx, &c, &s))
            .map_err(RtmpOutError::Thread)?;
        Ok(RtmpOutput {
            tx,
            counters,
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }
}

/// Counts what goes to the muxer as sent.
struct Counted {
    inner: ChannelReader,
    counters: Arc<LinkCounters>,
}

impl std::io::Read for Counted {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        if n > 0 && self.counters.state() != LinkState::Live {
            self.counters.set_state(LinkState::Live);
        }
        self.counters.sent(n, (n / TS_PACKET) as u64);
        Ok(n)
    }
}

fn run(url: &str, rx: &Receiver<Vec<u8>>, counters: &Arc<LinkCounters>, stop: &Arc<AtomicBool>) {
    let shown = redact(url);
    let mut backoff = FIRST_BACKOFF;
    while !stop.load(Ordering::Relaxed) {
        counters.set_state(LinkState::Connecting);
        let src = ByteSource::new(
            "rtmp-out.ts",
            Counted {
                inner: ChannelReader::new(rx.clone()),
                counters: counters.clone(),
            },
        );
        let began = Instant::now();
        let r = remux_stream(&src, RemuxTarget::Url { url, muxer: "flv" }, stop.clone());
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let why = match r {
            Ok(_) => "the stream ended".to_string(),
            Err(e) => e.to_string().replace(url, &shown),
        };
        tracing::warn!(url = %shown, error = %why, "rtmp push: will retry");
        counters.error(why);
        counters.set_state(LinkState::Lost);
        if began.elapsed() >= STEADY {
            backoff = FIRST_BACKOFF;
        }
        let until = Instant::now() + backoff;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            // Meanwhile what arrives is dropped, so that the next push starts at the live edge.
            while let Ok(c) = rx.try_recv() {
                counters.dropped((c.len() / TS_PACKET) as u64);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

impl ChunkSink for RtmpOutput {
    fn deliver(&self, chunk: Chunk) {
        let n = (chunk.len() / TS_PACKET) as u64;
        match self.tx.try_send(chunk.to_vec()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.dropped(n)
            }
        }
    }
}

impl Link for RtmpOutput {
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

impl Drop for RtmpOutput {
    fn drop(&mut self) {
        self.stop();
    }
}
