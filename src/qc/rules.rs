//! What a QC run checks and how strictly: the thresholds a workflow sets (its `[qc]` table) and
//! what stops it. A value type: owned by `qc`, read by workflows.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// QC thresholds and what stops a workflow.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QcRules {
    /// Decode errors tolerated before QC fails.
    pub max_decode_errors: u64,
    /// Black, frozen or silent stretches at least this long are reported (warn).
    pub black_min_s: f64,
    pub freeze_min_s: f64,
    pub silence_min_s: f64,
    /// A stretch longer than this fails QC.
    pub fail_over_s: f64,
    /// Declared duration against the essence, seconds.
    pub duration_tolerance_s: f64,
    /// Integrated loudness outside target ± tolerance is a warning.
    pub loudness_target: f64,
    pub loudness_tolerance: f64,
    pub true_peak_max: f64,
    /// Whether a warning stops the workflow like a failure.
    pub warnings_stop: bool,
    /// What every file should be when its metadata does not say: `width`, `height`,
    /// `frame_rate`, `field_order`, `aspect`, `audio_channels`, `audio_layout`,
    /// `audio_tracks`, `audio_channels_total` (e.g. the house format).
    pub expect: serde_json::Map<String, Value>,
}

impl Default for QcRules {
    fn default() -> Self {
        QcRules {
            max_decode_errors: 0,
            black_min_s: 2.0,
            freeze_min_s: 5.0,
            silence_min_s: 5.0,
            fail_over_s: 30.0,
            duration_tolerance_s: 1.0,
            loudness_target: -23.0,
            loudness_tolerance: 2.0,
            true_peak_max: -1.0,
            warnings_stop: false,
            expect: serde_json::Map::new(),
        }
    }
}
