//! Where an encode runs: the CPU or a kind of GPU. A value type named in the configuration
//! (`jobs.gpus`), in profiles and in jobs; what each backend can do on this machine is probed by
//! the media engine (`av::hw`), not here.

use serde::Serialize;

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

    /// Parses a backend name (`nvenc`, `vaapi`, `qsv`).
    pub fn gpu_named(name: &str) -> Option<Backend> {
        match name {
            "nvenc" | "cuda" => Some(Backend::Nvenc),
            "vaapi" => Some(Backend::Vaapi),
            "qsv" => Some(Backend::Qsv),
            _ => None,
        }
    }
}
