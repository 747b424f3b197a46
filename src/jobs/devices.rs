//! The machine's slots as the scheduler sees them: CPU encode slots, and per GPU its encoder
//! sessions and what it can encode. A job is placed where it can run: on a GPU that has the
//! sessions and the codecs for its encodes (the rest of its work on a CPU slot), else on the
//! CPU. A GPU whose jobs fail `max_failures` times in a row is taken out of rotation and
//! reported, instead of failing every later job; an operator puts it back.
//!
//! Pure bookkeeping, no I/O: the supervisor calls it under one lock.

use serde::Serialize;

use crate::av::hw::Backend;

/// One video encode a job makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encode {
    pub codec: String,
    pub pix_fmt: String,
}

/// What a job needs: CPU work (software encodes, or anything that is not a transcode), and the
/// encodes a GPU could take instead of the CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    pub cpu: bool,
    pub gpu: Vec<Encode>,
}

impl Needs {
    pub fn cpu_only() -> Needs {
        Needs {
            cpu: true,
            gpu: Vec::new(),
        }
    }

    /// Whether a GPU can take all of it, so that it needs no CPU slot there.
    pub fn gpu_only(&self) -> bool {
        !self.cpu && !self.gpu.is_empty()
    }
}

/// A GPU the scheduler may use.
#[derive(Debug, Clone)]
pub struct GpuSpec {
    /// `nvenc:0`, `vaapi:renderD128`.
    pub id: String,
    pub backend: Backend,
    /// What opens it (`ANTENNE_HW_DEVICE` of its workers).
    pub device: Option<String>,
    /// Encoder sessions at once (NVENC on GeForce cards: a driver limit; elsewhere memory).
    pub sessions: usize,
    /// Codecs it encodes (`h264`, `hevc`).
    pub codecs: Vec<String>,
    /// Bit depths it encodes.
    pub bit_depths: Vec<u8>,
    /// Chroma formats it encodes (`420`).
    pub chroma: Vec<String>,
}

impl GpuSpec {
    /// Whether it can make this encode.
    pub fn can(&self, e: &Encode) -> bool {
        let (depth, chroma) = pix_fmt_shape(&e.pix_fmt);
        let codec = if e.codec == "h265" { "hevc" } else { &e.codec };
        self.codecs.iter().any(|c| c == codec)
            && self.bit_depths.contains(&depth)
            && self.chroma.iter().any(|c| c == chroma)
    }
}

/// Bit depth and chroma format of a pixel format name.
pub fn pix_fmt_shape(p: &str) -> (u8, &'static str) {
    let depth = if p.contains("10") || p == "p010le" || p == "p010" {
        10
    } else if p.contains("12") {
        12
    } else {
        8
    };
    let chroma = if p.contains("444") {
        "444"
    } else if p.contains("422") {
        "422"
    } else {
        "420"
    };
    (depth, chroma)
}

#[derive(Debug, Clone)]
struct Gpu {
    spec: GpuSpec,
    in_use: usize,
    failures_in_a_row: u32,
    failures: u64,
    succeeded: u64,
    /// Why it is out of rotation, and since when (RFC 3339).
    out: Option<(String, String)>,
}

/// Where a job runs, and what it holds until it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    Cpu,
    /// A slot of the light lane (ingest, fixity, delivery, webhooks, purge).
    Light,
    Gpu {
        /// Index into the pool's GPUs.
        index: usize,
        id: String,
        backend: Backend,
        device: Option<String>,
        sessions: usize,
        /// Whether it also holds a CPU slot (its other encodes are software).
        cpu: bool,
    },
}

impl Placement {
    pub fn name(&self) -> &str {
        match self {
            Placement::Cpu | Placement::Light => "cpu",
            Placement::Gpu { id, .. } => id,
        }
    }
}

/// What a claim may take now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimable {
    /// A CPU slot is free: any job.
    Any,
    /// Only GPU sessions are free: jobs a GPU can run whole.
    GpuOnly,
    Nothing,
}

/// The state of one GPU, as the API reports it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GpuView {
    pub id: String,
    pub backend: String,
    pub device: Option<String>,
    pub sessions: usize,
    pub sessions_in_use: usize,
    pub codecs: Vec<String>,
    pub bit_depths: Vec<u8>,
    pub chroma: Vec<String>,
    pub in_rotation: bool,
    /// Why it was taken out of rotation.
    pub out_reason: Option<String>,
    pub out_since: Option<String>,
    pub failures_in_a_row: u32,
    pub failures: u64,
    pub succeeded: u64,
}

/// The slots of the machine, as the API reports them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SlotsView {
    pub cpu_slots: usize,
    pub cpu_in_use: usize,
    /// The light lane: ingest, fixity, delivery, webhooks and purge run there, never waiting
    /// behind a transcode (0: they share the CPU slots).
    pub light_slots: usize,
    pub light_in_use: usize,
    /// Consecutive failures that take a GPU out of rotation.
    pub max_failures: u32,
    pub gpus: Vec<GpuView>,
}

#[derive(Debug)]
pub struct Pool {
    cpu_slots: usize,
    cpu_in_use: usize,
    light_slots: usize,
    light_in_use: usize,
    gpus: Vec<Gpu>,
    max_failures: u32,
}

impl Pool {
    pub fn new(cpu_slots: usize, gpus: Vec<GpuSpec>, max_failures: u32) -> Pool {
        Pool {
            cpu_slots: cpu_slots.max(1),
            cpu_in_use: 0,
            light_slots: 0,
            light_in_use: 0,
            gpus: gpus
                .into_iter()
                .map(|spec| Gpu {
                    spec,
                    in_use: 0,
                    failures_in_a_row: 0,
                    failures: 0,
                    succeeded: 0,
                    out: None,
                })
                .collect(),
            max_failures: max_failures.max(1),
        }
    }

    /// A lane of `n` slots for light jobs, beside the encode slots.
    pub fn with_light_slots(mut self, n: usize) -> Pool {
        self.light_slots = n;
        self
    }

    pub fn has_light_lane(&self) -> bool {
        self.light_slots > 0
    }

    /// Whether the light lane has a free slot.
    pub fn light_free(&self) -> bool {
        self.light_in_use < self.light_slots
    }

    /// Holds a slot of the light lane; `None` when it is full.
    pub fn take_light(&mut self) -> Option<Placement> {
        self.light_free().then(|| {
            self.light_in_use += 1;
            Placement::Light
        })
    }

    /// Jobs running (for the claim loop and shutdown).
    pub fn busy(&self) -> bool {
        self.cpu_in_use > 0 || self.light_in_use > 0 || self.gpus.iter().any(|g| g.in_use > 0)
    }

    pub fn claimable(&self) -> Claimable {
        if self.cpu_in_use < self.cpu_slots {
            Claimable::Any
        } else if self
            .gpus
            .iter()
            .any(|g| g.out.is_none() && g.in_use < g.spec.sessions)
        {
            Claimable::GpuOnly
        } else {
            Claimable::Nothing
        }
    }

    /// Places a job and holds what it needs; `None` when it cannot run now. `avoid` lists GPUs
    /// its earlier attempts failed on.
    pub fn place(&mut self, needs: &Needs, avoid: &[String]) -> Option<Placement> {
        let cpu_free = self.cpu_in_use < self.cpu_slots;
        if !needs.gpu.is_empty() && (cpu_free || !needs.cpu) {
            let want = needs.gpu.len();
            // The least busy GPU that can make every encode.
            let best = self
                .gpus
                .iter()
                .enumerate()
                .filter(|(_, g)| {
                    g.out.is_none()
                        && !avoid.contains(&g.spec.id)
                        && g.spec.sessions.saturating_sub(g.in_use) >= want
                        && needs.gpu.iter().all(|e| g.spec.can(e))
                })
                .min_by_key(|(_, g)| g.in_use)
                .map(|(i, _)| i);
            if let Some(i) = best {
                let g = &mut self.gpus[i];
                g.in_use += want;
                if needs.cpu {
                    self.cpu_in_use += 1;
                }
                return Some(Placement::Gpu {
                    index: i,
                    id: g.spec.id.clone(),
                    backend: g.spec.backend,
                    device: g.spec.device.clone(),
                    sessions: want,
                    cpu: needs.cpu,
                });
            }
        }
        if cpu_free {
            self.cpu_in_use += 1;
            return Some(Placement::Cpu);
        }
        None
    }

    /// Gives back what a placement held.
    pub fn release(&mut self, p: &Placement) {
        match p {
            Placement::Cpu => self.cpu_in_use = self.cpu_in_use.saturating_sub(1),
            Placement::Light => self.light_in_use = self.light_in_use.saturating_sub(1),
            Placement::Gpu {
                index,
                sessions,
                cpu,
                ..
            } => {
                if let Some(g) = self.gpus.get_mut(*index) {
                    g.in_use = g.in_use.saturating_sub(*sessions);
                }
                if *cpu {
                    self.cpu_in_use = self.cpu_in_use.saturating_sub(1);
                }
            }
        }
    }

    /// Counts a job's end on its GPU; a failure of the device (not of the source) in a row of
    /// `max_failures` takes it out of rotation: the reason is returned, to be reported.
    pub fn outcome(&mut self, p: &Placement, device_failed: bool, why: &str) -> Option<String> {
        let Placement::Gpu { index, .. } = p else {
            return None;
        };
        let max = self.max_failures;
        let g = self.gpus.get_mut(*index)?;
        if !device_failed {
            g.failures_in_a_row = 0;
            g.succeeded += 1;
            return None;
        }
        g.failures += 1;
        g.failures_in_a_row += 1;
        if g.out.is_none() && g.failures_in_a_row >= max {
            let reason = format!(
                "{} jobs failed on it in a row; last: {}",
                g.failures_in_a_row,
                why.chars().take(300).collect::<String>()
            );
            g.out = Some((
                reason.clone(),
                crate::catalog::rfc3339(time::OffsetDateTime::now_utc().unix_timestamp() * 1000),
            ));
            return Some(reason);
        }
        None
    }

    /// Puts a GPU back in rotation; `false` when there is no such GPU.
    pub fn restore(&mut self, id: &str) -> bool {
        match self.gpus.iter_mut().find(|g| g.spec.id == id) {
            Some(g) => {
                g.out = None;
                g.failures_in_a_row = 0;
                true
            }
            None => false,
        }
    }

    pub fn view(&self) -> SlotsView {
        SlotsView {
            cpu_slots: self.cpu_slots,
            cpu_in_use: self.cpu_in_use,
            light_slots: self.light_slots,
            light_in_use: self.light_in_use,
            max_failures: self.max_failures,
            gpus: self
                .gpus
                .iter()
                .map(|g| GpuView {
                    id: g.spec.id.clone(),
                    backend: g.spec.backend.name().into(),
                    device: g.spec.device.clone(),
                    sessions: g.spec.sessions,
                    sessions_in_use: g.in_use,
                    codecs: g.spec.codecs.clone(),
                    bit_depths: g.spec.bit_depths.clone(),
                    chroma: g.spec.chroma.clone(),
                    in_rotation: g.out.is_none(),
                    out_reason: g.out.as_ref().map(|o| o.0.clone()),
                    out_since: g.out.as_ref().map(|o| o.1.clone()),
                    failures_in_a_row: g.failures_in_a_row,
                    failures: g.failures,
                    succeeded: g.succeeded,
                })
                .collect(),
        }
    }
}

/// The GPUs a `jobs.gpus` setting names: `auto` (those that open), `none`, or a list such as
/// `nvenc:0, nvenc:1, vaapi:/dev/dri/renderD128` (used as declared: one that does not open
/// fails its first jobs and leaves the rotation, which is reported).
pub fn configured_gpus(setting: &str, sessions: usize) -> Result<Vec<GpuSpec>, String> {
    let found = match setting.trim() {
        "none" | "" => return Ok(Vec::new()),
        "auto" => crate::av::hw::gpu_devices(),
        list => list
            .split(',')
            .map(|s| crate::av::hw::gpu_device(s.trim()))
            .collect::<Result<Vec<_>, String>>()?,
    };
    Ok(found
        .into_iter()
        .map(|d| GpuSpec {
            id: d.id,
            backend: d.backend,
            device: d.device,
            sessions: sessions.max(1),
            codecs: d
                .encoders
                .iter()
                .filter_map(|e| e.split('_').next())
                .map(String::from)
                .collect(),
            // What the engine drives on every GPU backend (see `hw::gpu_can`).
            bit_depths: vec![8],
            chroma: vec!["420".into()],
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(id: &str, sessions: usize, codecs: &[&str]) -> GpuSpec {
        GpuSpec {
            id: id.into(),
            backend: Backend::Nvenc,
            device: None,
            sessions,
            codecs: codecs.iter().map(|c| c.to_string()).collect(),
            bit_depths: vec![8],
            chroma: vec!["420".into()],
        }
    }

    fn enc(codec: &str, pix: &str) -> Encode {
        Encode {
            codec: codec.into(),
            pix_fmt: pix.into(),
        }
    }

    #[test]
    fn jobs_go_where_they_can_run() {
        let mut p = Pool::new(1, vec![gpu("nvenc:0", 3, &["h264"])], 3);
        let ladder = Needs {
            cpu: false,
            gpu: vec![enc("h264", "yuv420p"), enc("h264", "yuv420p")],
        };
        let hevc = Needs {
            cpu: false,
            gpu: vec![enc("hevc", "yuv420p")],
        };
        let a = p.place(&ladder, &[]).unwrap();
        assert_eq!(a.name(), "nvenc:0");
        // The GPU cannot make HEVC: the CPU slot takes it.
        let b = p.place(&hevc, &[]).unwrap();
        assert_eq!(b, Placement::Cpu);
        assert_eq!(p.claimable(), Claimable::GpuOnly);
        // One session left: a two-encode job waits.
        assert!(p.place(&ladder, &[]).is_none());
        p.release(&a);
        assert_eq!(p.place(&ladder, &[]).unwrap().name(), "nvenc:0");
        // A 10-bit or 4:2:2 encode is the CPU's.
        assert!(!gpu("x", 1, &["h264"]).can(&enc("h264", "yuv420p10le")));
        assert!(!gpu("x", 1, &["h264"]).can(&enc("h264", "yuv422p")));
    }

    #[test]
    fn mixed_jobs_hold_a_cpu_slot_and_sessions() {
        let mut p = Pool::new(1, vec![gpu("nvenc:0", 4, &["h264"])], 3);
        let mixed = Needs {
            cpu: true,
            gpu: vec![enc("h264", "yuv420p")],
        };
        let a = p.place(&mixed, &[]).unwrap();
        assert!(matches!(a, Placement::Gpu { cpu: true, .. }));
        assert_eq!(p.claimable(), Claimable::GpuOnly);
        // No CPU slot left for another mixed job.
        assert!(p.place(&mixed, &[]).is_none());
        p.release(&a);
        assert_eq!(p.claimable(), Claimable::Any);
        assert!(!p.busy());
    }

    #[test]
    fn a_failing_gpu_leaves_the_rotation_and_comes_back() {
        let mut p = Pool::new(2, vec![gpu("nvenc:0", 2, &["h264"])], 2);
        let n = Needs {
            cpu: false,
            gpu: vec![enc("h264", "yuv420p")],
        };
        let a = p.place(&n, &[]).unwrap();
        assert!(p.outcome(&a, true, "cannot open").is_none());
        p.release(&a);
        // A retry avoids the GPU it failed on.
        let cpu = p.place(&n, &["nvenc:0".into()]).unwrap();
        assert_eq!(cpu, Placement::Cpu);
        p.release(&cpu);
        let b = p.place(&n, &[]).unwrap();
        // A source problem is not the device's, and a success ends the row.
        assert!(p.outcome(&b, false, "").is_none());
        p.release(&b);
        let c = p.place(&n, &[]).unwrap();
        assert!(p.outcome(&c, true, "x").is_none());
        p.release(&c);
        let d = p.place(&n, &[]).unwrap();
        let why = p.outcome(&d, true, "encoder init failed").unwrap();
        assert!(why.contains("2 jobs failed"), "{why}");
        p.release(&d);
        let v = p.view();
        assert!(!v.gpus[0].in_rotation);
        assert_eq!((v.gpus[0].failures, v.gpus[0].succeeded), (3, 1));
        // Out of rotation: jobs go to the CPU.
        let e = p.place(&n, &[]).unwrap();
        assert_eq!(e, Placement::Cpu);
        p.release(&e);
        assert!(p.restore("nvenc:0"));
        assert!(!p.restore("nvenc:9"));
        assert_eq!(p.place(&n, &[]).unwrap().name(), "nvenc:0");
    }

    #[test]
    fn light_jobs_have_their_own_lane() {
        let mut p = Pool::new(1, vec![], 3).with_light_slots(2);
        let heavy = p.place(&Needs::cpu_only(), &[]).unwrap();
        assert_eq!(p.claimable(), Claimable::Nothing);
        // The encode slot is taken: light jobs still run, up to the lane's size.
        assert!(p.light_free());
        let a = p.take_light().unwrap();
        let b = p.take_light().unwrap();
        assert_eq!((a.name(), &b), ("cpu", &Placement::Light));
        assert!(p.take_light().is_none());
        let v = p.view();
        assert_eq!((v.light_slots, v.light_in_use, v.cpu_in_use), (2, 2, 1));
        p.release(&a);
        assert!(p.light_free());
        p.release(&b);
        p.release(&heavy);
        assert!(!p.busy());
        assert!(!Pool::new(1, vec![], 3).has_light_lane());
    }

    #[test]
    fn pixel_formats() {
        assert_eq!(pix_fmt_shape("yuv420p"), (8, "420"));
        assert_eq!(pix_fmt_shape("yuv422p10le"), (10, "422"));
        assert_eq!(pix_fmt_shape("p010le"), (10, "420"));
        assert_eq!(pix_fmt_shape("yuv444p12le"), (12, "444"));
    }
}
