//! Hardware backends, detected at run time: a backend is usable when its encoder is compiled into
//! the linked FFmpeg AND its device can actually be opened on this machine. Nothing here is chosen
//! at build time, so the default build runs everywhere and uses a GPU only where one answers.

use std::ffi::CString;

use serde::Serialize;

use super::{ff, ffi, has_encoder, init};

pub use crate::config::Backend;

/// The libav hardware device type this backend opens.
fn device_type(backend: Backend) -> Option<ffi::AVHWDeviceType> {
    match backend {
        Backend::Software => None,
        Backend::Nvenc => Some(ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_CUDA),
        Backend::Vaapi => Some(ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_VAAPI),
        Backend::Qsv => Some(ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_QSV),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BackendStatus {
    pub backend: Backend,
    pub available: bool,
    /// Encoders of this backend compiled into the linked FFmpeg.
    pub encoders: Vec<String>,
    /// Why it cannot be used, when it cannot.
    pub error: Option<String>,
}

/// An opened hardware device, released on drop.
pub struct HwDevice {
    ptr: *mut ffi::AVBufferRef,
}

// SAFETY: an AVHWDeviceContext reference is reference-counted and libav documents device
// contexts as usable from any thread once created.
unsafe impl Send for HwDevice {}
// SAFETY: shared use only takes new references (av_buffer_ref), which is atomic.
unsafe impl Sync for HwDevice {}

impl HwDevice {
    pub fn as_ptr(&self) -> *mut ffi::AVBufferRef {
        self.ptr
    }
}

impl Drop for HwDevice {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from av_hwdevice_ctx_create and is unreferenced exactly once.
        unsafe { ffi::av_buffer_unref(&mut self.ptr) }
    }
}

/// Whether the engine encodes `codec` in `pix_fmt` on a GPU backend: 8-bit 4:2:0 H.264 and
/// HEVC, what every NVENC, VA-API and QSV generation takes.
pub fn gpu_can(codec: &str, pix_fmt: &str) -> bool {
    matches!(codec, "h264" | "hevc" | "h265") && matches!(pix_fmt, "yuv420p" | "nv12")
}

/// The device a process opens: `ANTENNE_HW_DEVICE` (a CUDA index such as `1`, or a render node
/// such as `/dev/dri/renderD129`), set by the job scheduler for the GPU it placed a job on.
fn device_string(backend: Backend) -> Option<String> {
    std::env::var("ANTENNE_HW_DEVICE")
        .ok()
        .filter(|d| !d.is_empty())
        .or_else(|| match backend {
            Backend::Vaapi => std::env::var("ANTENNE_VAAPI_DEVICE").ok(),
            _ => None,
        })
}

/// Why a hardware device did not open.
#[derive(Debug, thiserror::Error)]
pub enum HwError {
    #[error("software backend has no device")]
    NoDevice,
    #[error(
        "cannot open {} device{}: {source}{}",
        .backend.name(),
        .device.as_deref().map(|d| format!(" {d}")).unwrap_or_default(),
        driver_hint(*.backend)
    )]
    Open {
        backend: Backend,
        device: Option<String>,
        #[source]
        source: ff::Error,
    },
}

/// What a backend's device needs on the machine, said when it does not open.
fn driver_hint(backend: Backend) -> &'static str {
    match backend {
        Backend::Nvenc => " (needs the NVIDIA driver: libcuda.so.1 and /dev/nvidia*)",
        Backend::Vaapi => " (needs a VA-API driver and a render node, e.g. /dev/dri/renderD128)",
        Backend::Qsv => " (needs the Intel media driver and a render node)",
        Backend::Software => "",
    }
}

/// Opens the backend's device (`ANTENNE_HW_DEVICE`, else its default), or says why not.
pub fn open_device(backend: Backend) -> Result<HwDevice, HwError> {
    open_device_at(backend, device_string(backend).as_deref())
}

/// Opens one device of a backend (`None`: its default), or says why not.
pub fn open_device_at(backend: Backend, device: Option<&str>) -> Result<HwDevice, HwError> {
    init();
    let Some(kind) = device_type(backend) else {
        return Err(HwError::NoDevice);
    };
    let device = device.map(str::to_string);
    let cdev = device
        .as_deref()
        .map(|d| CString::new(d).unwrap_or_default());
    let mut ptr: *mut ffi::AVBufferRef = std::ptr::null_mut();
    // SAFETY: `ptr` is an out-parameter; the device string outlives the call; no options.
    let ret = unsafe {
        ffi::av_hwdevice_ctx_create(
            &mut ptr,
            kind,
            cdev.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            std::ptr::null_mut(),
            0,
        )
    };
    if ret < 0 || ptr.is_null() {
        return Err(HwError::Open {
            backend,
            device,
            source: ff::Error::from(ret),
        });
    }
    Ok(HwDevice { ptr })
}

fn encoders_of(backend: Backend) -> Vec<String> {
    ["h264", "hevc"]
        .iter()
        .filter_map(|c| backend.encoder_for(c))
        .filter(|e| has_encoder(e))
        .collect()
}

/// What this machine offers, each hardware backend probed by opening its device.
pub fn detect() -> Vec<BackendStatus> {
    let mut out = vec![BackendStatus {
        backend: Backend::Software,
        available: true,
        encoders: [
            "libx264",
            "libx265",
            "mpeg2video",
            "prores_ks",
            "dnxhd",
            "aac",
            "pcm_s24le",
        ]
        .iter()
        .filter(|e| has_encoder(e))
        .map(|e| e.to_string())
        .collect(),
        error: None,
    }];
    for b in [Backend::Nvenc, Backend::Vaapi, Backend::Qsv] {
        out.push(status_of(b));
    }
    out
}

/// One hardware backend's status.
pub fn status_of(b: Backend) -> BackendStatus {
    let encoders = encoders_of(b);
    let (available, error) = if encoders.is_empty() {
        (
            false,
            Some(format!("the linked FFmpeg has no {} encoder", b.name())),
        )
    } else {
        match open_device(b) {
            Ok(_dev) => (true, None),
            Err(e) => (false, Some(e.to_string())),
        }
    };
    BackendStatus {
        backend: b,
        available,
        encoders,
        error,
    }
}

/// A GPU found on this machine: its scheduler id (`nvenc:0`, `vaapi:renderD128`), backend, the
/// device string that opens it, the video encoders it has, and whether it opened.
#[derive(Debug, Clone, Serialize)]
pub struct GpuDevice {
    pub id: String,
    pub backend: Backend,
    pub device: Option<String>,
    pub encoders: Vec<String>,
    pub error: Option<String>,
}

/// A device named `backend:device` (`nvenc:0`, `vaapi:/dev/dri/renderD128`), probed by opening.
pub fn gpu_device(spec: &str) -> Result<GpuDevice, String> {
    let (b, dev) = spec.split_once(':').unwrap_or((spec, ""));
    let backend = Backend::gpu_named(b.trim())
        .ok_or_else(|| format!("{spec:?}: the backend is not nvenc, vaapi or qsv"))?;
    let dev = dev.trim();
    let device = (!dev.is_empty()).then(|| dev.to_string());
    let short = device
        .as_deref()
        .map(|d| d.rsplit('/').next().unwrap_or(d).to_string())
        .unwrap_or_else(|| "0".into());
    let encoders = encoders_of(backend);
    let error = if encoders.is_empty() {
        Some(format!(
            "the linked FFmpeg has no {} encoder",
            backend.name()
        ))
    } else {
        open_device_at(backend, device.as_deref())
            .err()
            .map(|e| e.to_string())
    };
    Ok(GpuDevice {
        id: format!("{}:{short}", backend.name()),
        backend,
        device,
        encoders,
        error,
    })
}

/// Every GPU this machine shows (NVIDIA by `/dev/nvidiaN`, VA-API by render node), each probed
/// by opening it; those that do not open are left out.
pub fn gpu_devices() -> Vec<GpuDevice> {
    let mut specs = Vec::new();
    let nodes = |dir: &str, prefix: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.strip_prefix(prefix)
                    .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
            })
            .collect();
        v.sort();
        v
    };
    for n in nodes("/dev", "nvidia") {
        specs.push(format!("nvenc:{}", &n["nvidia".len()..]));
    }
    for n in nodes("/dev/dri", "renderD") {
        specs.push(format!("vaapi:/dev/dri/{n}"));
    }
    specs
        .iter()
        .filter_map(|s| gpu_device(s).ok())
        .filter(|d| d.error.is_none())
        .collect()
}
