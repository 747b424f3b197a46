//! The live engine behind outputs with a `profile`: the output's sources (primary, backup) are
//! hub readers decoded once each, switched with failover to the slate, and encoded per the live
//! profile into one constant-rate TS sent through the output's transport, or into a live HLS
//! ladder in `<data>/live/<output name>/` (an `hls` output, served by the API).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::UNIX_EPOCH;

use crate::av::io::{InputSource, PacketFeed};
use crate::av::live::{self, Failover, LiveInput, LiveProgress, OnAir, Slate, SwitchEvent};
use crate::hub::registry::{LiveError, OutputLink, ProfileHook, Switch, Transcode};
use crate::link::{Chunk, ChunkSink, Link, LinkState, LinkStats};
use crate::pipeline::live::{compile, LiveDefaults, LiveSinks};
use crate::pipeline::BackendChoice;
use crate::profile::{self, Profile};

/// The live profiles of this appliance's profile folder (or the built-in ones).
pub struct LiveEngine {
    profiles_dir: Option<PathBuf>,
    backend: BackendChoice,
    /// `<data>/live`: the `hls` outputs' folders.
    hls_root: PathBuf,
}

impl LiveEngine {
    pub fn new(profiles_dir: Option<PathBuf>, backend: &str, hls_root: PathBuf) -> LiveEngine {
        let backend = match backend {
            "software" => BackendChoice::Software,
            "nvenc" => BackendChoice::Nvenc,
            "vaapi" => BackendChoice::Vaapi,
            "qsv" => BackendChoice::Qsv,
            _ => BackendChoice::Auto,
        };
        LiveEngine {
            profiles_dir,
            backend,
            hls_root,
        }
    }

    /// The profile, if it is one an output of `kind` can run: for `hls`, `hls` outputs (a
    /// ladder); for the TS transports, a single `mpegts` output with a `muxrate` (a live TS is
    /// constant-rate).
    fn load(&self, kind: &str, name: &str) -> Result<Profile, String> {
        let p = profile::find(name, self.profiles_dir.as_deref()).map_err(|e| e.to_string())?;
        if kind == "hls" {
            return match p.outputs.iter().find(|o| o.container != "hls") {
                Some(o) => Err(format!(
                    "{name:?} is not a live HLS profile: its output {:?} is {:?}, an hls output \
                     takes hls outputs (a ladder)",
                    o.name, o.container
                )),
                None if p.outputs.is_empty() => Err(format!("{name:?} has no outputs")),
                None => Ok(p),
            };
        }
        let ts: Vec<_> = p
            .outputs
            .iter()
            .filter(|o| o.container == "mpegts")
            .collect();
        if let Some(o) = p.outputs.iter().find(|o| o.container != "mpegts") {
            return Err(format!(
                "{name:?} is not a live TS profile: its output {:?} is {:?}, a TS output \
                 (udp, rtp, srt) takes one mpegts output",
                o.name, o.container
            ));
        }
        match ts.as_slice() {
            [o] if o.muxrate.is_none() => Err(format!(
                "{name:?} is not a live profile: its output {:?} has no muxrate (a live TS is \
                 constant-rate)",
                o.name
            )),
            [_] => Ok(p),
            _ => Err(format!(
                "{name:?} is not a live TS profile: it has {} mpegts outputs, a TS output takes one",
                ts.len()
            )),
        }
    }
}

impl ProfileHook for LiveEngine {
    fn check(&self, kind: &str, profile: &str) -> Result<(), String> {
        self.load(kind, profile).map(|_| ())
    }

    fn hls_dir(&self, output: &str) -> PathBuf {
        // Names are printable text; as a folder name they keep only what cannot climb out.
        let safe: String = output
            .chars()
            .map(|c| match c {
                '/' | '\\' | '\0' => '_',
                c => c,
            })
            .collect();
        let safe = if safe.starts_with('.') {
            format!("_{safe}")
        } else {
            safe
        };
        self.hls_root.join(safe)
    }

    fn start(&self, t: Transcode, sink: Arc<dyn OutputLink>) -> Result<Box<dyn Link>, LiveError> {
        let prof = self
            .load(&t.kind, &t.profile)
            .map_err(|why| LiveError::Invalid {
                field: "profile".into(),
                why,
            })?;
        let inputs = t
            .inputs
            .into_iter()
            .map(|(name, r)| LiveInput {
                source: InputSource::Packets(PacketFeed::new(name.clone(), r)),
                name,
            })
            .collect();
        let slate = match t.slate.as_deref() {
            None | Some("bars") => Slate::Generated {
                ident: t.name.clone(),
            },
            Some(p) => Slate::File(PathBuf::from(p)),
        };
        let failover = Failover {
            loss_ms: t.loss_ms,
            return_after_s: t.return_after_s,
            ..Failover::default()
        };
        let to = sink.clone();
        let chunks: Arc<dyn ChunkSink> = Arc::new(move |c: Chunk| to.deliver(c));
        let ts_name = prof
            .outputs
            .first()
            .map(|o| o.name.clone())
            .unwrap_or_default();
        let sinks = if t.kind == "hls" {
            let dir = self.hls_dir(&t.name);
            std::fs::create_dir_all(&dir).map_err(|e| LiveError::Start {
                what: format!("output {:?}: folder {}", t.name, dir.display()),
                source: Box::new(e),
            })?;
            LiveSinks {
                hls_dir: Some(dir),
                ..LiveSinks::default()
            }
        } else {
            LiveSinks {
                ts: vec![(ts_name, chunks)],
                ..LiveSinks::default()
            }
        };
        let job = compile(
            &[&prof],
            inputs,
            slate,
            failover,
            &sinks,
            LiveDefaults::default(),
            self.backend,
        )
        .map_err(|e| LiveError::Start {
            what: format!("output {:?}: live profile {:?}", t.name, t.profile),
            source: Box::new(e),
        })?;
        job.write_master().map_err(|e| LiveError::Start {
            what: format!("output {:?}: master playlist", t.name),
            source: Box::new(e),
        })?;
        let cancel = Arc::new(AtomicBool::new(false));
        let error: Arc<Mutex<Option<String>>> = Arc::default();
        let (c, err) = (cancel.clone(), error.clone());
        let mut on_switch = t.on_switch;
        let manual = t.manual;
        let name = t.name.clone();
        let thread = std::thread::Builder::new()
            .name(format!("live-tx {name}"))
            .spawn(move || {
                let progress = Arc::new(LiveProgress {
                    manual,
                    ..LiveProgress::default()
                });
                let hear = move |e: SwitchEvent| {
                    let ms =
                        e.at.duration_since(UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as i64);
                    on_switch(Switch {
                        from: e.from_name,
                        to: e.to_name,
                        reason: e.reason.to_string(),
                        on_primary: e.to == OnAir::Input(0),
                        at: crate::catalog::rfc3339(ms),
                    });
                };
                let why = match live::run(&job.spec, hear, progress, c) {
                    Ok(r) if r.failed_outputs.is_empty() => return,
                    Ok(r) => r
                        .failed_outputs
                        .iter()
                        .map(|(o, e)| format!("{o}: {e}"))
                        .collect::<Vec<_>>()
                        .join("; "),
                    Err(e) => e.to_string(),
                };
                tracing::error!(output = %name, error = %why, "live transcode ended");
                *err.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
            })
            .map_err(|e| LiveError::Start {
                what: format!("output {:?}: transcode thread", t.name),
                source: Box::new(e),
            })?;
        Ok(Box::new(EngineLink {
            sink,
            cancel,
            error,
            thread: Mutex::new(Some(thread)),
        }))
    }
}

/// A running transcode: reported as its transport, plus the engine's own failure.
struct EngineLink {
    sink: Arc<dyn OutputLink>,
    cancel: Arc<AtomicBool>,
    error: Arc<Mutex<Option<String>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Link for EngineLink {
    fn stats(&self) -> LinkStats {
        let mut s = self.sink.stats();
        if let Some(e) = self.error.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            s.state = LinkState::Stopped;
            s.last_error = Some(e);
        }
        s
    }

    fn stop(&self) {
        self.cancel.store(true, Ordering::Release);
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

/// The "transport" of an `hls` output: the ladder is written by the engine into its folder, so
/// nothing is delivered here; it is live while it exists.
#[derive(Default)]
pub struct HlsFolder {
    stopped: AtomicBool,
}

impl ChunkSink for HlsFolder {
    fn deliver(&self, _chunk: Chunk) {}
}

impl Link for HlsFolder {
    fn stats(&self) -> LinkStats {
        LinkStats {
            state: if self.stopped.load(Ordering::Acquire) {
                LinkState::Stopped
            } else {
                LinkState::Live
            },
            ..LinkStats::default()
        }
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }
}
