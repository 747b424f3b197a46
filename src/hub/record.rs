//! Live recording: a hub reader writes a source's TS as it comes (passthrough, no decode) to
//! files in the media store, cut every `segment_s` into pieces. Each piece is an asset of kind
//! and status `live_recording` while it grows (bytes and duration written to the catalog every
//! [`PROGRESS`]), then, closed (fsync), hashed and probed as any ingested file, a normal asset:
//! `ready`, or `ingesting` and handed to a workflow's steps (QC, proxies) through the
//! [`RecordingHook`] the composition root plugs in.
//!
//! Where a piece is cut: once a piece is `segment_s` long, at the next video random access point
//! (a packet of the video PID whose adaptation field sets `random_access_indicator`, which
//! muxers set on the packet starting an IDR/I-frame's PES), moved back to the PAT just before it
//! when one precedes it closely (muxers repeat PAT/PMT before each keyframe): each piece starts
//! with PAT, PMT and a keyframe, so it decodes from its first packet, and no packet is lost or
//! written twice between pieces. A stream without one (audio only, or no keyframe for half a
//! segment) is cut at a PAT, then at any packet boundary.
//!
//! A source lost during a recording leaves the file open; writing goes on when packets come
//! back (the gap is logged and put on the change feed); a source restarted (a new hub) is read
//! again. A write error ends the recording with the error in the source's stats and an event;
//! what was written is kept as an asset. A service that stops (or dies) with a piece growing
//! closes it when it starts again ([`LiveService::close_orphan_recordings`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::registry::{LiveError, LiveService};
use super::{HubReader, Recv};
use crate::catalog::assets::{AssetInput, NewFile};
use crate::catalog::live::LiveTable;
use crate::catalog::recording::{NewPiece, Recording};
use crate::catalog::{Catalog, Principal};
use crate::config::appliance::LiveRecording;

/// How often a growing piece's bytes and duration go to the catalog.
pub const PROGRESS: Duration = Duration::from_secs(2);
/// Silence longer than this during a recording is a gap (logged and on the change feed).
const GAP: Duration = Duration::from_secs(1);
/// The recorder's queue, in chunks: a few seconds of a 20 Mb/s feed, so that opening the next
/// piece in the catalog never costs a packet.
const QUEUE: usize = 16_384;
/// Packets held after a PAT while waiting for the keyframe that may follow it.
const HOLD_MAX: usize = 64;
/// How long the first piece waits for a random access point before it takes what comes.
const LEAD_IN_MAX: Duration = Duration::from_secs(5);
/// A piece is armed for its cut this much before `segment_s` (a tenth of it at most): the PCR
/// of a keyframe due exactly at `segment_s` reads a little less, and should not be missed.
const EARLY: Duration = Duration::from_millis(500);
const TS: usize = 188;
const PCR_WRAP: u64 = 1 << 33;

// ---- the TS facts a cut needs ----

fn pid(p: &[u8]) -> u16 {
    (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2])
}

fn unit_start(p: &[u8]) -> bool {
    p[1] & 0x40 != 0
}

/// The adaptation field after its length byte (flags first), when there is one.
fn adaptation(p: &[u8]) -> Option<&[u8]> {
    if (p[3] >> 4) & 2 == 0 {
        return None;
    }
    let len = usize::from(p[4]);
    (len > 0 && 5 + len <= TS).then(|| &p[5..5 + len])
}

fn payload(p: &[u8]) -> Option<&[u8]> {
    match (p[3] >> 4) & 3 {
        1 => Some(&p[4..]),
        3 => {
            let start = 5 + usize::from(p[4]);
            (start < TS).then(|| &p[start..])
        }
        _ => None,
    }
}

fn random_access(p: &[u8]) -> bool {
    adaptation(p).is_some_and(|a| a[0] & 0x40 != 0)
}

/// The PCR base (90 kHz), when this packet carries one.
fn pcr(p: &[u8]) -> Option<u64> {
    let a = adaptation(p)?;
    if a[0] & 0x10 == 0 || a.len() < 7 {
        return None;
    }
    Some(
        (u64::from(a[1]) << 25)
            | (u64::from(a[2]) << 17)
            | (u64::from(a[3]) << 9)
            | (u64::from(a[4]) << 1)
            | (u64::from(a[5]) >> 7),
    )
}

/// The section a PSI packet starts (after the pointer field), within its packet.
fn section(p: &[u8]) -> Option<&[u8]> {
    if !unit_start(p) {
        return None;
    }
    let pl = payload(p)?;
    let ptr = usize::from(*pl.first()?);
    let s = pl.get(1 + ptr..)?;
    if s.len() < 3 {
        return None;
    }
    let len = (usize::from(s[1] & 0x0f) << 8) | usize::from(s[2]);
    // Without its CRC: sections longer than a packet are not followed.
    s.get(..(3 + len).checked_sub(4)?)
}

fn is_video(stream_type: u8) -> bool {
    matches!(stream_type, 0x01 | 0x02 | 0x10 | 0x1b | 0x24 | 0x42 | 0xea)
}

/// What the stream says of itself: its PMT, video and PCR PIDs, and how much content time its
/// PCR has covered (steps over 2 s or backwards are discontinuities, not time).
#[derive(Debug, Default, Clone)]
pub struct TsScan {
    pmt: Option<u16>,
    video: Option<u16>,
    pcr_pid: Option<u16>,
    last_pcr: Option<u64>,
    /// Content time seen so far, in 90 kHz ticks.
    pub ticks: u64,
}

impl TsScan {
    pub fn observe(&mut self, p: &[u8]) {
        let id = pid(p);
        if id == 0 {
            if let Some(s) = section(p).filter(|s| s[0] == 0x00 && s.len() >= 8) {
                for e in s[8..].chunks_exact(4) {
                    let program = (u16::from(e[0]) << 8) | u16::from(e[1]);
                    if program != 0 {
                        self.pmt = Some((u16::from(e[2] & 0x1f) << 8) | u16::from(e[3]));
                        break;
                    }
                }
            }
        } else if Some(id) == self.pmt {
            if let Some(s) = section(p).filter(|s| s[0] == 0x02 && s.len() >= 12) {
                self.pcr_pid = Some((u16::from(s[8] & 0x1f) << 8) | u16::from(s[9]));
                let info = (usize::from(s[10] & 0x0f) << 8) | usize::from(s[11]);
                let mut i = 12 + info;
                self.video = None;
                while i + 5 <= s.len() {
                    let es = (u16::from(s[i + 1] & 0x1f) << 8) | u16::from(s[i + 2]);
                    if is_video(s[i]) && self.video.is_none() {
                        self.video = Some(es);
                    }
                    i += 5 + ((usize::from(s[i + 3] & 0x0f) << 8) | usize::from(s[i + 4]));
                }
            }
        }
        if Some(id) == self.pcr_pid {
            if let Some(now) = pcr(p) {
                if let Some(last) = self.last_pcr {
                    let step = (now + PCR_WRAP - last) % PCR_WRAP;
                    if step <= 2 * 90_000 {
                        self.ticks += step;
                    }
                }
                self.last_pcr = Some(now);
            }
        }
    }

    pub fn has_pcr(&self) -> bool {
        self.last_pcr.is_some()
    }

    /// Whether a cut may go before this packet: a keyframe's first packet (`Key`), or a PAT.
    fn kind(&self, p: &[u8]) -> Mark {
        let id = pid(p);
        if id == 0 && unit_start(p) {
            return Mark::Pat;
        }
        // Until the PMT says which PID is video, a random access flag may be audio's.
        let key = self.video.is_some_and(|v| id == v && random_access(p));
        if key {
            Mark::Key
        } else {
            Mark::Other
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Pat,
    Key,
    Other,
}

/// Whether the piece being written is long enough to be cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    /// Not yet.
    No,
    /// At the next random access point.
    Yes,
    /// Now: no random access point came in time.
    Force,
}

/// What to do with a packet given to [`Splitter::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Write what was held ([`Splitter::take_held`]), then the packet, to the current piece.
    Write,
    /// Nothing yet: the splitter holds the packet.
    Hold,
    /// Write what was held before to the current piece ([`Splitter::take_flushed`]); the packet
    /// is held in its place.
    FlushHold,
    /// Close the current piece; the next one starts with what was held, then the packet.
    Cut,
}

/// Decides where pieces are cut (see the module's text).
#[derive(Debug, Default)]
pub struct Splitter {
    pub scan: TsScan,
    held: Vec<u8>,
    flushed: Vec<u8>,
}

impl Splitter {
    pub fn push(&mut self, p: &[u8], arm: Arm) -> Step {
        self.scan.observe(p);
        let mark = self.scan.kind(p);
        match arm {
            Arm::No => Step::Write,
            Arm::Force => Step::Cut,
            Arm::Yes => match mark {
                Mark::Key => Step::Cut,
                // A PMT read that lists no video: a PAT is as good a start as any.
                Mark::Pat if self.scan.video.is_none() && self.scan.pcr_pid.is_some() => Step::Cut,
                Mark::Pat if self.held.is_empty() => {
                    self.held.extend_from_slice(p);
                    Step::Hold
                }
                Mark::Pat => {
                    self.flushed = std::mem::take(&mut self.held);
                    self.held.extend_from_slice(p);
                    Step::FlushHold
                }
                Mark::Other if !self.held.is_empty() && self.held.len() < HOLD_MAX * TS => {
                    self.held.extend_from_slice(p);
                    Step::Hold
                }
                Mark::Other => Step::Write,
            },
        }
    }

    pub fn take_held(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }

    pub fn take_flushed(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.flushed)
    }
}

// ---- the recorder ----

/// What the composition root plugs in: a closed piece handed to a workflow's steps.
pub trait RecordingHook: Send + Sync {
    /// Whether `workflow` exists and has steps (then the piece is `ingesting` until they end).
    fn has_steps(&self, workflow: &str) -> bool;
    /// Starts the workflow's steps on the asset; `run` names this run.
    fn start(
        &self,
        workflow: &str,
        asset_id: i64,
        run: &str,
    ) -> futures_util::future::BoxFuture<'static, Result<(), String>>;
}

/// Where recordings go and what happens to them once closed.
pub struct RecordSetup {
    /// The media store: pieces go under `<media>/live/<source>/`.
    pub media: PathBuf,
    pub hook: Option<Arc<dyn RecordingHook>>,
    pub runtime: tokio::runtime::Handle,
}

#[derive(thiserror::Error, Debug)]
pub enum RecordError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("catalog: {0}")]
    Catalog(#[from] crate::catalog::CatalogError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RecordError + '_ {
    move |source| RecordError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A recording's figures now.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RecordingStats {
    pub session: String,
    /// `recording`, `waiting` (the source is silent: the file stays open), `ended`, `failed`.
    pub state: String,
    /// The piece being written (its `live_recordings` id) and its asset.
    pub recording_id: Option<i64>,
    pub asset_id: Option<i64>,
    pub pieces: u64,
    /// Bytes the hub delivered to the recorder; `bytes_written` is what is in the files, and
    /// `bytes_skipped` what came before the first random access point (not decodable, not
    /// written): received = written + skipped (+ what is held at the instant of asking).
    pub bytes_received: u64,
    pub bytes_written: u64,
    pub bytes_skipped: u64,
    /// Chunks the recorder lost because it fell behind (0 unless the disk stalls for seconds).
    pub dropped: u64,
    pub gaps: u64,
    pub segment_s: u64,
    pub started: String,
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Figures {
    received: AtomicU64,
    skipped: AtomicU64,
    written: AtomicU64,
    pieces: AtomicU64,
    gaps: AtomicU64,
    dropped: AtomicU64,
    waiting: AtomicBool,
    ended: AtomicBool,
    current: Mutex<Option<(i64, i64)>>,
    error: Mutex<Option<String>>,
}

struct Running {
    session: String,
    segment_s: u64,
    started_ms: i64,
    stop: Arc<AtomicBool>,
    figures: Arc<Figures>,
    thread: Option<JoinHandle<()>>,
    /// The piece finalisations it started (hash and probe run beside the writing).
    finals: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// The recordings of one live service, by source.
#[derive(Default)]
pub struct Recordings {
    setup: OnceLock<RecordSetup>,
    running: Mutex<BTreeMap<i64, Running>>,
    serial: AtomicU64,
}

impl Recordings {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i64, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The source's recording figures (the last one, ended or not).
    pub fn stats(&self, source_id: i64) -> Option<RecordingStats> {
        let g = self.lock();
        let r = g.get(&source_id)?;
        let f = &r.figures;
        let error = f.error.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let current = *f.current.lock().unwrap_or_else(|e| e.into_inner());
        let state = if error.is_some() {
            "failed"
        } else if f.ended.load(Ordering::Acquire) {
            "ended"
        } else if f.waiting.load(Ordering::Acquire) {
            "waiting"
        } else {
            "recording"
        };
        Some(RecordingStats {
            session: r.session.clone(),
            state: state.into(),
            recording_id: current.map(|c| c.0),
            asset_id: current.map(|c| c.1),
            pieces: f.pieces.load(Ordering::Relaxed),
            bytes_received: f.received.load(Ordering::Relaxed),
            bytes_written: f.written.load(Ordering::Relaxed),
            bytes_skipped: f.skipped.load(Ordering::Relaxed),
            dropped: f.dropped.load(Ordering::Relaxed),
            gaps: f.gaps.load(Ordering::Relaxed),
            segment_s: r.segment_s,
            started: crate::catalog::rfc3339(r.started_ms),
            last_error: error,
        })
    }

    /// Stops the source's recording and waits for its pieces to be closed and catalogued.
    pub fn stop_blocking(&self, source_id: i64) -> Option<String> {
        let (thread, finals, session) = {
            let mut g = self.lock();
            let r = g.get_mut(&source_id)?;
            r.stop.store(true, Ordering::Release);
            (r.thread.take(), r.finals.clone(), r.session.clone())
        };
        if let Some(t) = thread {
            let _ = t.join();
        }
        let pending: Vec<_> =
            std::mem::take(&mut *finals.lock().unwrap_or_else(|e| e.into_inner()));
        for t in pending {
            let _ = t.join();
        }
        Some(session)
    }

    /// Tells the source's recording to stop, without waiting: it closes its piece by itself.
    pub fn signal_stop(&self, source_id: i64) {
        if let Some(r) = self.lock().get(&source_id) {
            r.stop.store(true, Ordering::Release);
        }
    }

    pub fn signal_stop_all(&self) {
        for r in self.lock().values() {
            r.stop.store(true, Ordering::Release);
        }
    }

    /// Stops every recording (the service is stopping): each piece closed, synced and
    /// catalogued before this returns.
    pub fn stop_all(&self) {
        let ids: Vec<i64> = self.lock().keys().copied().collect();
        for id in ids {
            self.stop_blocking(id);
        }
    }
}

/// Everything the writing thread needs.
struct Ctx {
    svc: Weak<LiveService>,
    catalog: Catalog,
    rt: tokio::runtime::Handle,
    who: Principal,
    hook: Option<Arc<dyn RecordingHook>>,
    source_id: i64,
    source_name: String,
    dir: PathBuf,
    session: String,
    segment: Duration,
    until: Option<Instant>,
    title: String,
    collection: Option<i64>,
    workflow: String,
    figures: Arc<Figures>,
    finals: Arc<Mutex<Vec<JoinHandle<()>>>>,
    stop: Arc<AtomicBool>,
}

/// A piece being written.
struct Piece {
    id: i64,
    asset_id: i64,
    path: PathBuf,
    out: BufWriter<File>,
    bytes: u64,
    start_ticks: u64,
    opened: Instant,
}

impl Piece {
    fn duration(&self, scan: &TsScan) -> Duration {
        if scan.has_pcr() {
            Duration::from_micros((scan.ticks - self.start_ticks) * 100 / 9)
        } else {
            self.opened.elapsed()
        }
    }
}

fn utc_stamp(ms: i64) -> (String, String) {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let file = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let title = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    (file, title)
}

impl Ctx {
    /// A new piece: its catalog record first (so that no file exists without one), then the file.
    fn open(&self, n: u64, ticks: u64) -> Result<Piece, RecordError> {
        let now_ms = self.catalog.now_ms();
        let (stamp, when) = utc_stamp(now_ms);
        let base = crate::ingest::safe_name(&self.source_name);
        std::fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let mut path = self.dir.join(format!("{base}_{stamp}.ts"));
        let mut k = 2;
        while path.exists() {
            path = self.dir.join(format!("{base}_{stamp}_{k}.ts"));
            k += 1;
        }
        let input = AssetInput {
            title: Some(format!("{} {when}", self.title)),
            ..AssetInput::default()
        };
        let file = NewFile {
            role: "source".into(),
            path: path.display().to_string(),
            size: 0,
            sha256: String::new(),
            container: "mpegts".into(),
            video_codec: String::new(),
            width: 0,
            height: 0,
            duration_s: 0.0,
            technical: serde_json::json!({}),
            profile: String::new(),
            verification: None,
        };
        let piece = NewPiece {
            source_id: self.source_id,
            source_name: &self.source_name,
            session: &self.session,
            piece: n as i64,
            workflow: &self.workflow,
        };
        let rec = self.rt.block_on(
            self.catalog
                .recording_start(&self.who, &input, &file, &piece),
        )?;
        if let Some(c) = self.collection {
            if let Err(e) =
                self.rt.block_on(
                    self.catalog
                        .set_in_collection(&self.who, c, rec.asset_id, true),
                )
            {
                tracing::warn!(asset = rec.asset_id, collection = c, error = %e, "recording: not put in its collection");
            }
        }
        let f = match File::options().write(true).create_new(true).open(&path) {
            Ok(f) => f,
            Err(e) => {
                let err = RecordError::Io {
                    path: path.display().to_string(),
                    source: e,
                };
                self.end_record(&rec, Some(err.to_string()));
                return Err(err);
            }
        };
        self.figures.pieces.fetch_add(1, Ordering::Relaxed);
        *self
            .figures
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((rec.id, rec.asset_id));
        metrics::counter!("antenne_live_recording_pieces_total", "source" => self.source_id.to_string())
            .increment(1);
        tracing::info!(source = %self.source_name, recording = rec.id, asset = rec.asset_id, path = %path.display(), "recording: piece opened");
        Ok(Piece {
            id: rec.id,
            asset_id: rec.asset_id,
            path,
            out: BufWriter::with_capacity(1 << 20, f),
            bytes: 0,
            start_ticks: ticks,
            opened: Instant::now(),
        })
    }

    /// A piece whose file could not be made: its record ends as failed.
    fn end_record(&self, rec: &Recording, error: Option<String>) {
        let file = NewFile {
            role: "source".into(),
            path: rec.path.clone(),
            size: 0,
            sha256: String::new(),
            container: String::new(),
            video_codec: String::new(),
            width: 0,
            height: 0,
            duration_s: 0.0,
            technical: serde_json::json!({}),
            profile: String::new(),
            verification: None,
        };
        if let Err(e) =
            self.rt.block_on(
                self.catalog
                    .recording_end(rec.id, &file, "ready", error.as_deref()),
            )
        {
            tracing::error!(recording = rec.id, error = %e, "recording: end not recorded");
        }
    }

    fn write(&self, piece: &mut Piece, b: &[u8]) -> Result<(), RecordError> {
        if b.is_empty() {
            return Ok(());
        }
        piece.out.write_all(b).map_err(io_err(&piece.path))?;
        piece.bytes += b.len() as u64;
        self.figures
            .written
            .fetch_add(b.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Closes a piece (flush, fsync) and hands it to finalisation beside the writing.
    fn close(&self, piece: Piece, error: Option<String>) {
        let Piece {
            id,
            asset_id,
            path,
            out,
            ..
        } = piece;
        let error = match out.into_inner() {
            Ok(f) => match f.sync_all() {
                Ok(()) => error,
                Err(e) => error.or(Some(format!("{}: fsync: {e}", path.display()))),
            },
            Err(e) => error.or(Some(format!("{}: {}", path.display(), e.error()))),
        };
        let (catalog, rt, hook, workflow) = (
            self.catalog.clone(),
            self.rt.clone(),
            self.hook.clone(),
            self.workflow.clone(),
        );
        let t = std::thread::Builder::new()
            .name(format!("rec-final {id}"))
            .spawn(move || {
                finish(
                    &catalog,
                    &rt,
                    hook.as_deref(),
                    &workflow,
                    id,
                    asset_id,
                    &path,
                    error,
                )
            });
        match t {
            Ok(t) => self
                .finals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(t),
            Err(e) => {
                tracing::error!(recording = id, error = %e, "recording: no thread to close the piece")
            }
        }
    }

    fn progress(&self, piece: &mut Piece, scan: &TsScan) -> Result<(), RecordError> {
        piece.out.flush().map_err(io_err(&piece.path))?;
        let d = piece.duration(scan).as_secs_f64();
        if let Err(e) = self.rt.block_on(self.catalog.recording_progress(
            piece.id,
            piece.bytes as i64,
            d,
        )) {
            // The file is what counts; the catalog is told again at the next tick.
            tracing::warn!(recording = piece.id, error = %e, "recording: progress not recorded");
        }
        Ok(())
    }

    fn event(&self, piece: &Piece, op: &str) {
        if let Err(e) = self
            .rt
            .block_on(self.catalog.recording_event(piece.id, piece.asset_id, op))
        {
            tracing::warn!(recording = piece.id, error = %e, "recording: event not recorded");
        }
    }

    /// Reads the source again after its hub ended (the source restarted), until stopped.
    fn reattach(&self) -> Option<HubReader> {
        while !self.stopping() {
            let svc = self.svc.upgrade()?;
            if let Ok(r) = svc.reader(self.source_id, &format!("record {}", self.session), QUEUE) {
                return Some(r);
            }
            drop(svc);
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire) || self.until.is_some_and(|u| Instant::now() >= u)
    }

    fn fail(&self, e: &RecordError) {
        tracing::error!(source = %self.source_name, error = %e, "recording stopped");
        *self.figures.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        metrics::counter!("antenne_live_recording_errors_total", "source" => self.source_id.to_string())
            .increment(1);
        if let Err(err) = self.rt.block_on(self.catalog.live_event(
            LiveTable::Sources,
            self.source_id,
            "recording_failed",
            Some(serde_json::json!({ "reason": e.to_string() })),
        )) {
            tracing::warn!(error = %err, "recording: event not recorded");
        }
    }
}

/// The writing thread: from the first piece (already open) until stopped, the duration reached
/// or a write error.
fn record(ctx: Ctx, mut reader: HubReader, first: Piece) {
    let src = ctx.source_id.to_string();
    let mut split = Splitter::default();
    let mut piece = first;
    let mut last_data = Instant::now();
    let mut last_progress = Instant::now();
    let mut gap_from: Option<Instant> = None;
    let mut dropped_before = 0;
    let mut failure: Option<RecordError> = None;
    let mut lead_in = true;
    let result = (|| -> Result<(), RecordError> {
        while !ctx.stopping() {
            match reader.recv_timeout(Duration::from_millis(100)) {
                Ok(chunk) => {
                    if let Some(g) = gap_from.take() {
                        tracing::warn!(source = %ctx.source_name, gap_s = g.elapsed().as_secs_f64(), "recording: source back, writing on");
                        ctx.figures.waiting.store(false, Ordering::Release);
                        ctx.event(&piece, "resumed");
                    }
                    last_data = Instant::now();
                    ctx.figures
                        .received
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    metrics::counter!("antenne_live_recording_bytes_total", "source" => src.clone())
                        .increment(chunk.len() as u64);
                    for p in chunk.chunks(TS) {
                        if p.len() < TS || p[0] != 0x47 {
                            // Not a TS packet: written as it came, never cut at.
                            ctx.write(&mut piece, p)?;
                            continue;
                        }
                        if lead_in {
                            // The first piece starts at the first random access point too: what
                            // comes before it cannot be decoded, and is counted, not written.
                            let arm = if piece.opened.elapsed() >= LEAD_IN_MAX {
                                Arm::Force
                            } else {
                                Arm::Yes
                            };
                            let skipped = match split.push(p, arm) {
                                Step::Cut => {
                                    lead_in = false;
                                    piece.start_ticks = split.scan.ticks;
                                    let h = split.take_held();
                                    ctx.write(&mut piece, &h)?;
                                    ctx.write(&mut piece, p)?;
                                    0
                                }
                                Step::Hold => 0,
                                Step::FlushHold => split.take_flushed().len(),
                                Step::Write => split.take_held().len() + TS,
                            };
                            ctx.figures
                                .skipped
                                .fetch_add(skipped as u64, Ordering::Relaxed);
                            continue;
                        }
                        let d = piece.duration(&split.scan);
                        let arm =
                            if d >= ctx.segment + (ctx.segment / 2).max(Duration::from_secs(5)) {
                                Arm::Force
                            } else if d + (ctx.segment / 10).min(EARLY) >= ctx.segment {
                                Arm::Yes
                            } else {
                                Arm::No
                            };
                        match split.push(p, arm) {
                            Step::Write => {
                                let h = split.take_held();
                                ctx.write(&mut piece, &h)?;
                                ctx.write(&mut piece, p)?;
                            }
                            Step::Hold => {}
                            Step::FlushHold => {
                                let f = split.take_flushed();
                                ctx.write(&mut piece, &f)?;
                            }
                            Step::Cut => {
                                let n = ctx.figures.pieces.load(Ordering::Relaxed) + 1;
                                let next = ctx.open(n, split.scan.ticks)?;
                                let old = std::mem::replace(&mut piece, next);
                                ctx.close(old, None);
                                let h = split.take_held();
                                ctx.write(&mut piece, &h)?;
                                ctx.write(&mut piece, p)?;
                                last_progress = Instant::now();
                            }
                        }
                    }
                }
                Err(Recv::Timeout) => {
                    if gap_from.is_none() && last_data.elapsed() >= GAP {
                        tracing::warn!(source = %ctx.source_name, "recording: source silent, file kept open");
                        gap_from = Some(last_data);
                        ctx.figures.waiting.store(true, Ordering::Release);
                        ctx.figures.gaps.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("antenne_live_recording_gaps_total", "source" => src.clone())
                            .increment(1);
                        ctx.event(&piece, "gap");
                    }
                }
                Err(Recv::Closed) => {
                    let d = reader.dropped();
                    ctx.figures
                        .dropped
                        .fetch_add(d - dropped_before.min(d), Ordering::Relaxed);
                    match ctx.reattach() {
                        Some(r) => {
                            reader = r;
                            dropped_before = 0;
                        }
                        None => break,
                    }
                }
            }
            let d = reader.dropped();
            if d > dropped_before {
                ctx.figures
                    .dropped
                    .fetch_add(d - dropped_before, Ordering::Relaxed);
                dropped_before = d;
            }
            if last_progress.elapsed() >= PROGRESS {
                last_progress = Instant::now();
                ctx.progress(&mut piece, &split.scan)?;
            }
        }
        // What was held waiting for a keyframe belongs to the piece being written (before the
        // first one, it was never going to be).
        let h = split.take_held();
        if lead_in {
            ctx.figures
                .skipped
                .fetch_add(h.len() as u64, Ordering::Relaxed);
            return Ok(());
        }
        ctx.write(&mut piece, &h)
    })();
    if let Err(e) = result {
        ctx.fail(&e);
        failure = Some(e);
    }
    drop(reader);
    ctx.close(piece, failure.map(|e| e.to_string()));
    ctx.figures.ended.store(true, Ordering::Release);
    metrics::gauge!("antenne_live_recording_active", "source" => src).set(0.0);
}

/// A closed piece becomes a normal asset: hashed and probed as any ingest
/// ([`crate::ingest::describe`]), `ready`, or `ingesting` and handed to its workflow.
#[allow(clippy::too_many_arguments)]
fn finish(
    catalog: &Catalog,
    rt: &tokio::runtime::Handle,
    hook: Option<&dyn RecordingHook>,
    workflow: &str,
    id: i64,
    asset_id: i64,
    path: &Path,
    mut error: Option<String>,
) {
    let file = match crate::ingest::describe(path, "source", None) {
        Ok(f) => f,
        Err(e) => {
            let (sha256, size) = crate::ingest::hash_file(path).unwrap_or_default();
            error = error.or_else(|| Some(e.to_string()));
            NewFile {
                role: "source".into(),
                path: path.display().to_string(),
                size: size as i64,
                sha256,
                container: String::new(),
                video_codec: String::new(),
                width: 0,
                height: 0,
                duration_s: 0.0,
                technical: serde_json::json!({}),
                profile: String::new(),
                verification: None,
            }
        }
    };
    if file.size == 0 && error.is_none() {
        error = Some("nothing recorded: no decodable packet came from the source".into());
    }
    // An empty piece has nothing for a workflow to check.
    let steps =
        file.size > 0 && !workflow.is_empty() && hook.is_some_and(|h| h.has_steps(workflow));
    let status = if steps { "ingesting" } else { "ready" };
    match rt.block_on(catalog.recording_end(id, &file, status, error.as_deref())) {
        Ok(r) => tracing::info!(
            recording = id,
            asset = asset_id,
            bytes = r.bytes,
            duration_s = r.duration_s,
            "recording: piece closed"
        ),
        Err(e) => {
            tracing::error!(recording = id, error = %e, "recording: piece not closed in the catalog");
            return;
        }
    }
    if let (true, Some(h)) = (steps, hook) {
        if let Err(e) = rt.block_on(h.start(workflow, asset_id, &format!("rec{id}"))) {
            tracing::error!(recording = id, workflow, error = %e, "recording: workflow not started");
        }
    }
}

impl LiveService {
    /// Where recordings go; set once by the composition root before any recording starts.
    pub fn set_record_setup(&self, setup: RecordSetup) {
        let _ = self.recordings.setup.set(setup);
    }

    /// Starts recording a running source for `who`; the first piece is open when this returns.
    pub async fn start_recording(
        self: &Arc<Self>,
        source_id: i64,
        source_name: &str,
        def: &LiveRecording,
        who: &Principal,
    ) -> Result<RecordingStats, LiveError> {
        let (me, name, def, who) = (
            self.clone(),
            source_name.to_string(),
            def.clone(),
            who.clone(),
        );
        tokio::task::spawn_blocking(move || me.start_recording_now(source_id, &name, &def, &who))
            .await
            .map_err(|e| LiveError::Start {
                what: "recording".into(),
                source: Box::new(e),
            })?
    }

    /// Stops every recording and waits until each piece is closed and catalogued (the service
    /// is stopping).
    pub async fn stop_recordings(self: &Arc<Self>) {
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || me.recordings.stop_all()).await;
    }

    fn start_recording_now(
        self: &Arc<Self>,
        source_id: i64,
        source_name: &str,
        def: &LiveRecording,
        who: &Principal,
    ) -> Result<RecordingStats, LiveError> {
        let setup = self
            .recordings
            .setup
            .get()
            .ok_or_else(|| LiveError::NotBuilt {
                kind: "recording (no media store set up)".into(),
            })?;
        let segment_s = def.segment_s.unwrap_or(3600);
        if !(1..=86_400).contains(&segment_s) {
            return Err(invalid("segment_s", "1-86400"));
        }
        if def.duration_s.is_some_and(|d| d == 0 || d > 7 * 86_400) {
            return Err(invalid("duration_s", "1-604800"));
        }
        if def
            .title
            .as_deref()
            .is_some_and(|t| t.trim().is_empty() || t.chars().count() > 200)
        {
            return Err(invalid("title", "1-200 characters"));
        }
        if let Some(w) = def.workflow.as_deref() {
            if !setup.hook.as_ref().is_some_and(|h| h.has_steps(w)) {
                return Err(invalid("workflow", format!("no workflow {w:?} with steps")));
            }
        }
        {
            let g = self.recordings.lock();
            if g.get(&source_id)
                .is_some_and(|r| r.thread.as_ref().is_some_and(|t| !t.is_finished()))
            {
                return Err(LiveError::Conflict(format!(
                    "live source {source_id} is being recorded already"
                )));
            }
        }
        let n = self.recordings.serial.fetch_add(1, Ordering::Relaxed);
        let started_ms = self.catalog().now_ms();
        let session = format!("{}-{n}", utc_stamp(started_ms).0);
        let reader = self.reader(source_id, &format!("record {session}"), QUEUE)?;
        let figures = Arc::new(Figures::default());
        let stop = Arc::new(AtomicBool::new(false));
        let finals = Arc::new(Mutex::new(Vec::new()));
        let ctx = Ctx {
            svc: Arc::downgrade(self),
            catalog: self.catalog().clone(),
            rt: setup.runtime.clone(),
            who: who.clone(),
            hook: setup.hook.clone(),
            source_id,
            source_name: source_name.to_string(),
            dir: setup
                .media
                .join("live")
                .join(crate::ingest::safe_name(source_name)),
            session: session.clone(),
            segment: Duration::from_secs(segment_s),
            until: def
                .duration_s
                .map(|d| Instant::now() + Duration::from_secs(d)),
            title: def.title.clone().unwrap_or_else(|| source_name.to_string()),
            collection: def.collection,
            workflow: def.workflow.clone().unwrap_or_default(),
            figures: figures.clone(),
            finals: finals.clone(),
            stop: stop.clone(),
        };
        let first = ctx.open(1, 0).map_err(|e| match e {
            RecordError::Catalog(c) => LiveError::Catalog(c),
            e => LiveError::Start {
                what: "recording".into(),
                source: Box::new(e),
            },
        })?;
        let thread = std::thread::Builder::new()
            .name(format!("record {source_id}"))
            .spawn(move || record(ctx, reader, first))
            .map_err(|e| LiveError::Start {
                what: "recording thread".into(),
                source: Box::new(e),
            })?;
        metrics::gauge!("antenne_live_recording_active", "source" => source_id.to_string())
            .set(1.0);
        tracing::info!(source = source_id, session = %session, segment_s, "recording started");
        self.recordings.lock().insert(
            source_id,
            Running {
                session,
                segment_s,
                started_ms,
                stop,
                figures,
                thread: Some(thread),
                finals,
            },
        );
        self.recordings
            .stats(source_id)
            .ok_or_else(|| LiveError::NotFound(format!("the recording of live source {source_id}")))
    }

    /// The source's recording figures now (the last one when none runs).
    pub fn recording_stats(&self, source_id: i64) -> Option<RecordingStats> {
        self.recordings.stats(source_id)
    }

    /// Stops a source's recording; returns the session's pieces, each closed and catalogued.
    pub async fn stop_recording(
        self: &Arc<Self>,
        source_id: i64,
    ) -> Result<Vec<Recording>, LiveError> {
        let running = self
            .recordings
            .lock()
            .get(&source_id)
            .is_some_and(|r| r.thread.is_some());
        if !running {
            return Err(LiveError::Conflict(format!(
                "live source {source_id} is not being recorded"
            )));
        }
        let me = self.clone();
        let session = tokio::task::spawn_blocking(move || me.recordings.stop_blocking(source_id))
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let all = self.catalog().recordings_of(source_id, 1000).await?;
        Ok(all.into_iter().filter(|r| r.session == session).collect())
    }

    /// Pieces left growing by a service that stopped without closing them (killed, power
    /// lost): each file cut back to whole TS packets, synced, and made a normal asset.
    pub async fn close_orphan_recordings(&self) -> Result<usize, LiveError> {
        let Some(setup) = self.recordings.setup.get() else {
            return Ok(0);
        };
        let orphans = self.catalog().recordings_growing().await?;
        let n = orphans.len();
        for r in orphans {
            let (catalog, rt, hook) = (
                self.catalog().clone(),
                setup.runtime.clone(),
                setup.hook.clone(),
            );
            tokio::task::spawn_blocking(move || {
                let path = PathBuf::from(&r.path);
                let error = match trim(&path) {
                    Ok(len) => {
                        tracing::warn!(recording = r.id, path = %r.path, bytes = len, "recording: closing a piece left growing by the last run");
                        None
                    }
                    Err(e) => Some(format!("left growing by the last run: {e}")),
                };
                finish(&catalog, &rt, hook.as_deref(), &r.workflow, r.id, r.asset_id, &path, error);
            })
            .await
            .map_err(|e| LiveError::Start {
                what: "closing recordings".into(),
                source: Box::new(e),
            })?;
        }
        Ok(n)
    }
}

/// Cuts a file back to whole TS packets and syncs it; its new length.
fn trim(path: &Path) -> std::io::Result<u64> {
    let f = File::options().write(true).open(path)?;
    let len = f.metadata()?.len();
    let whole = len - len % TS as u64;
    if whole != len {
        f.set_len(whole)?;
    }
    f.sync_all()?;
    Ok(whole)
}

fn invalid(field: &str, why: impl Into<String>) -> LiveError {
    LiveError::Invalid {
        field: field.to_string(),
        why: why.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TS packet: `pid`, unit start, optional adaptation flags (RAI 0x40), payload `pl`.
    fn pkt(pid: u16, start: bool, af: Option<u8>, pl: &[u8]) -> Vec<u8> {
        let mut p = vec![0xffu8; TS];
        p[0] = 0x47;
        p[1] = ((pid >> 8) as u8 & 0x1f) | if start { 0x40 } else { 0 };
        p[2] = pid as u8;
        let mut i = 4;
        if let Some(flags) = af {
            p[3] = 0x30;
            p[4] = 1;
            p[5] = flags;
            i = 6;
        } else {
            p[3] = 0x10;
        }
        p[i..i + pl.len()].copy_from_slice(pl);
        p
    }

    fn pat() -> Vec<u8> {
        // pointer, table 0, length 13, ts id, version, section, last, program 1 -> PMT 0x1000, CRC
        pkt(
            0,
            true,
            None,
            &[
                0, 0x00, 0xb0, 13, 0, 1, 0xc1, 0, 0, 0, 1, 0xf0, 0x00, 1, 2, 3, 4,
            ],
        )
    }

    fn pmt() -> Vec<u8> {
        // PCR PID 0x100; H.264 on 0x100, AAC on 0x101.
        pkt(
            0x1000,
            true,
            None,
            &[
                0, 0x02, 0xb0, 23, 0, 1, 0xc1, 0, 0, 0xe1, 0x00, 0xf0, 0, 0x1b, 0xe1, 0x00, 0xf0,
                0, 0x0f, 0xe1, 0x01, 0xf0, 0, 1, 2, 3, 4,
            ],
        )
    }

    #[test]
    fn the_stream_is_read_for_its_video_pid() {
        let mut s = TsScan::default();
        s.observe(&pat());
        assert_eq!(s.pmt, Some(0x1000));
        s.observe(&pmt());
        assert_eq!((s.video, s.pcr_pid), (Some(0x100), Some(0x100)));
        assert_eq!(s.kind(&pkt(0x100, true, Some(0x40), &[])), Mark::Key);
        assert_eq!(s.kind(&pkt(0x101, true, Some(0x40), &[])), Mark::Other);
        assert_eq!(s.kind(&pat()), Mark::Pat);
    }

    #[test]
    fn a_cut_goes_to_the_pat_before_the_keyframe() {
        let mut sp = Splitter::default();
        assert_eq!(sp.push(&pat(), Arm::No), Step::Write);
        assert_eq!(sp.push(&pmt(), Arm::No), Step::Write);
        let audio = pkt(0x101, true, Some(0x40), &[]);
        let video = pkt(0x100, false, None, &[]);
        let key = pkt(0x100, true, Some(0x40), &[]);
        // Armed: the audio keyframe does not cut; a PAT is held, then the PMT, then the key cuts.
        assert_eq!(sp.push(&audio, Arm::Yes), Step::Write);
        assert_eq!(sp.push(&video, Arm::Yes), Step::Write);
        assert_eq!(sp.push(&pat(), Arm::Yes), Step::Hold);
        assert_eq!(sp.push(&pmt(), Arm::Yes), Step::Hold);
        assert_eq!(sp.push(&key, Arm::Yes), Step::Cut);
        let held = sp.take_held();
        assert_eq!(held.len(), 2 * TS);
        assert_eq!(&held[..TS], &pat()[..]);
        // A PAT not followed by a keyframe is given back in order.
        assert_eq!(sp.push(&pat(), Arm::Yes), Step::Hold);
        assert_eq!(sp.push(&pat(), Arm::Yes), Step::FlushHold);
        assert_eq!(sp.take_flushed(), pat());
        for _ in 0..HOLD_MAX - 1 {
            assert_eq!(sp.push(&video, Arm::Yes), Step::Hold);
        }
        assert_eq!(sp.push(&video, Arm::Yes), Step::Write);
        assert_eq!(sp.take_held().len(), HOLD_MAX * TS);
        assert_eq!(sp.push(&video, Arm::Force), Step::Cut);
    }

    #[test]
    fn pcr_time_skips_discontinuities() {
        let mut s = TsScan::default();
        s.observe(&pat());
        s.observe(&pmt());
        let with_pcr = |base: u64| {
            let mut p = vec![0xffu8; TS];
            p[0] = 0x47;
            p[1] = 0x01;
            p[2] = 0x00;
            p[3] = 0x30;
            p[4] = 7;
            p[5] = 0x10;
            p[6] = (base >> 25) as u8;
            p[7] = (base >> 17) as u8;
            p[8] = (base >> 9) as u8;
            p[9] = (base >> 1) as u8;
            p[10] = ((base & 1) << 7) as u8;
            p
        };
        s.observe(&with_pcr(PCR_WRAP - 900));
        s.observe(&with_pcr(2700)); // across the wrap: 3600 ticks
        s.observe(&with_pcr(90_000 * 100)); // a jump: not time
        s.observe(&with_pcr(90_000 * 101));
        assert_eq!(s.ticks, 3600 + 90_000);
    }

    #[test]
    fn a_trailing_partial_packet_is_cut_off() {
        let dir = std::env::temp_dir().join(format!("antenne-trim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.ts");
        std::fs::write(&p, vec![0x47; TS * 3 + 100]).unwrap();
        assert_eq!(trim(&p).unwrap(), 3 * TS as u64);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 3 * TS as u64);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
