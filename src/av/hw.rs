//! Hardware backends, detected at run time: a backend is usable when its encoder is compiled into
//! the linked FFmpeg AND its device can actually be opened on this machine. Nothing here is chosen
//! at build time, so the default build runs everywhere and uses a GPU only where one answers.

use std::ffi::CString;

use serde::Serialize;

use super::{ff, ffi, has_encoder, init};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Software,
    Nvenc,
    Vaapi,
    Qsv,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Software => "software",
            Backend::Nvenc => "nvenc",
            Backend::Vaapi => "vaapi",
            Backend::Qsv => "qsv",
        }
    }

    /// The libav hardware device type this backend opens.
    fn device_type(self) -> Option<ffi::AVHWDeviceType> {
        match self {
            Backend::Software => None,
            Backend::Nvenc => Some(ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_CUDA),
            Backend::Vaapi => Some(ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_VAAPI),
            Backend::Qsv => Some(ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_QSV),
        }
    }

    /// The encoder this backend uses for a codec, if it has one.
    pub fn encoder_for(self, codec: &str) -> Option<String> {
        let suffix = match self {
            Backend::Software => {
                return Some(
                    match codec {
                        "h264" => "libx264",
                        "hevc" | "h265" => "libx265",
                        "prores" => "prores_ks",
                        other => other,
                    }
                    .to_string(),
                )
            }
            Backend::Nvenc => "nvenc",
            Backend::Vaapi => "vaapi",
            Backend::Qsv => "qsv",
        };
        match codec {
            "h264" => Some(format!("h264_{suffix}")),
            "hevc" | "h265" => Some(format!("hevc_{suffix}")),
            _ => None,
        }
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

/// Opens the backend's default device, or says why not.
pub fn open_device(backend: Backend) -> Result<HwDevice, String> {
    init();
    let Some(kind) = backend.device_type() else {
        return Err("software backend has no device".into());
    };
    let device = match backend {
        Backend::Vaapi => std::env::var("ANTENNE_VAAPI_DEVICE").ok(),
        _ => None,
    };
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
        let hint = match backend {
            Backend::Nvenc => " (needs the NVIDIA driver: libcuda.so.1 and /dev/nvidia*)",
            Backend::Vaapi => {
                " (needs a VA-API driver and a render node, e.g. /dev/dri/renderD128)"
            }
            Backend::Qsv => " (needs the Intel media driver and a render node)",
            Backend::Software => "",
        };
        return Err(format!(
            "cannot open {} device: {}{hint}",
            backend.name(),
            ff::Error::from(ret)
        ));
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
            Err(e) => (false, Some(e)),
        }
    };
    BackendStatus {
        backend: b,
        available,
        encoders,
        error,
    }
}
