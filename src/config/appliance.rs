//! The appliance configuration (`firmware-config/antenne.toml`): built-in defaults, then the file,
//! then `ANTENNE_<SECTION>_<KEY>` environment variables, then validation naming the key at fault.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: {key}: {message}")]
    Invalid {
        origin: String,
        key: &'static str,
        message: String,
    },
    /// A key the configuration's types refuse (an unknown key, a value of the wrong type),
    /// named by its path.
    #[error("{origin}: {key}: {message}")]
    Refused {
        origin: String,
        key: String,
        message: String,
    },
    /// More than one key is wrong: each, one to a line.
    #[error("{}", lines(.0))]
    Several(Vec<ConfigError>),
}

fn lines(errs: &[ConfigError]) -> String {
    errs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Bytes, written `"200G"`, `"512M"`, `"64Ki"` (decimal k/M/G/T, binary Ki/Mi/Gi/Ti) or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let mult: u64 = match unit {
            "" | "B" => 1,
            "k" | "K" => 1_000,
            "M" => 1_000_000,
            "G" => 1_000_000_000,
            "T" => 1_000_000_000_000,
            "Ki" => 1 << 10,
            "Mi" => 1 << 20,
            "Gi" => 1 << 30,
            "Ti" => 1 << 40,
            _ => return Err(format!("{s:?} is not a size (e.g. \"200G\", \"512Mi\")")),
        };
        let n: u64 = num
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a size (e.g. \"200G\", \"512Mi\")"))?;
        n.checked_mul(mult)
            .filter(|&v| v > 0)
            .map(ByteSize)
            .ok_or_else(|| format!("{s:?} is zero or too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) if n > 0 => Ok(ByteSize(n)),
            Raw::N(_) => Err(de::Error::custom("a size must be positive")),
            Raw::S(s) => s.parse().map_err(de::Error::custom),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    pub listen: String,
    /// A request that takes longer is answered 503 (uploads and event streams excepted).
    pub request_timeout_s: u32,
    /// On SIGTERM, how long in-flight requests get to finish.
    pub shutdown_grace_s: u32,
    /// Reverse proxies (CIDR blocks) whose `X-Forwarded-For` / `Forwarded` headers name the
    /// client; from any other peer those headers are ignored.
    pub trusted_proxies: Vec<super::Cidr>,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: "127.0.0.1:8080".into(),
            request_timeout_s: 30,
            shutdown_grace_s: 20,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    pub data_dir: PathBuf,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            data_dir: PathBuf::from("antenne-data"),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Catalog {
    pub url: String,
    /// Database connections kept open (0 = chosen from the backend).
    pub max_connections: u32,
    /// Descriptive fields of this house beyond the Dublin Core set.
    pub fields: Vec<CustomField>,
}

/// The value type of a custom catalog field.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Text,
    Integer,
    Boolean,
    /// `YYYY-MM-DD`.
    Date,
    /// One of `choices`.
    Choice,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CustomField {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FieldType,
    #[serde(default)]
    pub choices: Vec<String>,
    #[serde(default)]
    pub required: bool,
    /// Whether full-text search covers the value.
    #[serde(default = "yes")]
    pub searchable: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// Lifetime of a login session, in hours.
    pub session_hours: u32,
    /// Longest lifetime an API token may be given, in days.
    pub token_max_days: u32,
    /// Failed logins per user name and address before logins are refused for `login_window_s`.
    pub login_attempts: u32,
    pub login_window_s: u32,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            session_hours: 12,
            token_max_days: 365,
            login_attempts: 5,
            login_window_s: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Naming {
    pub template: String,
    pub channel: String,
}

impl Default for Naming {
    fn default() -> Self {
        Naming {
            template: "{channel}-{yyyy}-{seq:06}".into(),
            channel: "ANT".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Transcode {
    pub backend: String,
    pub profiles_dir: PathBuf,
}

impl Default for Transcode {
    fn default() -> Self {
        Transcode {
            backend: "auto".into(),
            profiles_dir: PathBuf::from("firmware-config/profiles"),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Ingest {
    /// Directories files may be ingested from by path; a relative one lies in
    /// `storage.data_dir` (resolved when the configuration is loaded, and made at start).
    pub roots: Vec<PathBuf>,
    pub max_upload: ByteSize,
    /// A resumable (tus) upload that receives nothing for this long is removed, its bytes with
    /// it.
    pub upload_expiry_s: u32,
}

impl Default for Ingest {
    fn default() -> Self {
        Ingest {
            roots: vec![PathBuf::from("incoming")],
            max_upload: ByteSize(200_000_000_000),
            upload_expiry_s: 86_400,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Jobs {
    /// Media jobs running at once (CPU encode slots); 0 = half the cores, at least one.
    pub workers: u32,
    /// A worker that reports nothing for this long is killed and its job retried.
    pub hang_timeout_s: u32,
    /// A worker whose resident memory passes this is killed.
    pub memory_limit: ByteSize,
    /// How long a claimed job stays this appliance's without a sign of life.
    pub lease_s: u32,
    /// This appliance's name in the shared queue; empty = the host name.
    pub appliance: String,
    /// Extra workflow files (added to and replacing the bundled `default`).
    pub workflows_dir: PathBuf,
    /// A job running longer than this is stopped and fails; 0 = no limit (a workflow step may
    /// set its own `timeout_s`).
    pub job_timeout_s: u32,
    /// GPUs transcodes may be placed on: `auto` (every GPU that opens, of the backend
    /// `transcode.backend` allows), `none`, or a list such as `nvenc:0, nvenc:1,
    /// vaapi:/dev/dri/renderD128` (used as declared: one that fails is reported and left out).
    pub gpus: String,
    /// Encoder sessions per GPU at once (GeForce NVENC: a driver limit, 8 on current drivers).
    pub gpu_sessions: u32,
    /// Device failures in a row that take a GPU out of rotation.
    pub gpu_max_failures: u32,
    /// Lets `POST /v1/jobs/noop` ask its worker to crash, hang or allocate memory, to test the
    /// supervisor. Off in production: an operator could otherwise take workers down at will.
    pub self_test: bool,
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs {
            workers: 0,
            hang_timeout_s: 120,
            memory_limit: ByteSize(8 << 30),
            lease_s: 60,
            appliance: String::new(),
            workflows_dir: PathBuf::from("firmware-config/workflows"),
            job_timeout_s: 0,
            gpus: "auto".into(),
            gpu_sessions: 3,
            gpu_max_failures: 3,
            self_test: false,
        }
    }
}

/// Live sources and outputs (see `firmware-config/antenne.toml`, section `[live]`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Live {
    /// A source is lost after this long without a packet, unless it sets its own `loss_ms`.
    pub loss_ms: u32,
    /// Chunks (of up to 7 TS packets) each reader of a source may have waiting before it drops.
    pub reader_queue: u32,
    /// Seconds between two preview pictures of a running source.
    pub preview_s: u32,
    /// Seconds a source or output stays this appliance's without a renewal, when several
    /// appliances share one catalog: another takes it over after that (2-3600).
    pub lease_s: u32,
    pub sources: Vec<LiveSource>,
    pub outputs: Vec<LiveOutput>,
    /// Recordings started on a schedule.
    pub recordings: Vec<LiveRecording>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            loss_ms: 500,
            reader_queue: 1024,
            preview_s: 5,
            lease_s: 15,
            sources: Vec::new(),
            outputs: Vec::new(),
            recordings: Vec::new(),
        }
    }
}

/// A live source: declared under `[[live.sources]]`, or the body of `POST /v1/live/sources`.
/// Which settings apply depends on `kind`; the others must be absent.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LiveSource {
    /// 1-100 printable characters, unique among sources.
    pub name: String,
    /// `udp`, `rtp`, `file_loop`, `srt_listener`, `srt_caller`, `rtmp`, `hls_pull`, `ndi`, `sdi`.
    pub kind: String,
    /// udp/rtp: the address and port to receive on (a multicast group joins it), e.g.
    /// `239.1.1.1:5000` or `0.0.0.0:5000`; srt_listener: the local `address:port`; srt_caller:
    /// the remote `host:port`; rtmp: the local `address:port` encoders connect to (e.g.
    /// `0.0.0.0:1935`; several rtmp sources may share one, each under its own key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// udp/rtp multicast: the local interface address the group is joined on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// udp/rtp: the jitter FIFO, in ms (default 50; 0-5000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer_ms: Option<u32>,
    /// Lost after this long without a packet (default `live.loss_ms`; 50-60000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_ms: Option<u32>,
    /// file_loop: the media file played in a loop (over the API: inside `ingest.roots`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub path: Option<std::path::PathBuf>,
    /// file_loop: a catalog asset whose source file is played in a loop (in place of `path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset_id: Option<i64>,
    /// hls_pull: the upstream playlist URL (a master or a media playlist; `http://` or `https://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// hls_pull, master playlist: the variant to take, by its `NAME`, `VIDEO` group or URI
    /// (default: the highest `BANDWIDTH` not above `max_bandwidth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// hls_pull, master playlist: the highest variant bandwidth taken, in bits/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bandwidth: Option<u64>,
    /// hls_pull over https: a PEM file of CA certificates trusted besides the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub ca_file: Option<std::path::PathBuf>,
    /// srt: the receiver latency in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u32>,
    /// srt: the AES passphrase (10-79 characters); never shown back in clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase: Option<String>,
    /// srt: the stream ID a caller sends or a listener routes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<String>,
    /// srt: the AES key length in bytes with a passphrase: 16, 24 or 32 (default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pbkeylen: Option<u32>,
    /// rtmp: the stream key encoders push to (`rtmp://appliance/live/<key>`); never shown back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// ndi: the NDI source name; sdi: the DeckLink device name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Whether it runs when the service starts (default true; declared sources only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// How a recording of a live source is made: the body of `POST /v1/live/sources/{id}/record`,
/// and (with `source`, `schedule`, `duration_s`) a `[[live.recordings]]` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LiveRecording {
    /// Schedule only: the declared source's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Schedule only: `every 30m` or a five-field cron line (UTC), as workflow triggers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// How long it records, in seconds (required on a schedule; absent over the API: until
    /// stopped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<u64>,
    /// Cut into pieces of this many seconds, each its own asset (1-86400; default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_s: Option<u64>,
    /// The pieces' title (default the source's name), followed by each piece's start time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// A collection each piece is put in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<i64>,
    /// A workflow whose steps (QC, proxies) each piece goes through once it is closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// Schedule only: whether it fires (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// A live output attached to a source: declared under `[[live.outputs]]`, or the body of
/// `POST /v1/live/outputs`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LiveOutput {
    /// 1-100 printable characters, unique among outputs.
    pub name: String,
    /// The source's name (in antenne.toml; over the API `source_id` may be given instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The source's id (API only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<i64>,
    /// `udp`, `rtp`, `srt_caller`, `srt_listener`, `rtmp`.
    pub kind: String,
    /// udp/rtp: the destination `address:port` (unicast or multicast); srt_caller: the remote
    /// `host:port`; srt_listener: the local `address:port`; rtmp: unused (see `url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// udp/rtp multicast: the local interface address it leaves from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// udp/rtp: time to live (hops), 1-255.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    /// Chunks queued towards the transport before it drops (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<u32>,
    /// A live profile to transcode through; absent: passthrough (remux, no decode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// rtmp: the server URL to push to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// srt: the sender latency in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u32>,
    /// srt: the AES passphrase; never shown back in clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase: Option<String>,
    /// srt: the stream ID to send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<String>,
    /// srt: the AES key length in bytes with a passphrase: 16, 24 or 32 (default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pbkeylen: Option<u32>,
    /// rtmp: the stream key; never shown back in clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Whether it runs when the service starts (default true; declared outputs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Failover (needs a `profile`): the source taken when the primary stops delivering, by
    /// name (antenne.toml) or id (`backup_id`, API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<i64>,
    /// Failover: what goes to air when no source delivers: `bars` (generated bars, tone and
    /// ident) or a media file's path, looped. Default `bars` with a profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slate: Option<String>,
    /// Failover: a source silent this long is left (default: the source's `loss_ms`, 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_ms: Option<u32>,
    /// Failover: the primary is taken back once healthy this long (default 10 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_after_s: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApplianceConfig {
    pub server: Server,
    pub storage: Storage,
    pub catalog: Catalog,
    pub naming: Naming,
    pub transcode: Transcode,
    pub ingest: Ingest,
    pub auth: Auth,
    pub jobs: Jobs,
    pub live: Live,
    pub playout: super::playout::Playout,
    pub delivery: super::delivery::Delivery,
    pub storages: super::storage::Storages,
    /// Where the values came from, for messages.
    #[serde(skip)]
    pub origin: String,
}

const SECTIONS: &[&str] = &[
    "server",
    "storage",
    "catalog",
    "naming",
    "transcode",
    "ingest",
    "auth",
    "jobs",
    "live",
    "playout",
    "delivery",
    "storages",
];

/// Loads defaults → `file` (when given) → `ANTENNE_<SECTION>_<KEY>` variables from `env`, then
/// validates (every mistake, see [`ConfigError::Several`]).
pub fn load(file: Option<&Path>, env: &[(String, String)]) -> Result<ApplianceConfig, ConfigError> {
    let cfg = read(file, env)?;
    let mut errs = problems(&cfg);
    if errs.len() == 1 {
        return Err(errs.remove(0));
    }
    if !errs.is_empty() {
        return Err(ConfigError::Several(errs));
    }
    Ok(with_absolute_roots(cfg))
}

/// Defaults → `file` → `env` as [`load`] reads them, not yet validated ([`problems`] says what
/// is wrong; [`with_absolute_roots`] completes it). Every key the types refuse is an error.
pub fn read(file: Option<&Path>, env: &[(String, String)]) -> Result<ApplianceConfig, ConfigError> {
    let (cfg, mut refused) = read_all(file, env)?;
    match refused.len() {
        0 => Ok(cfg),
        1 => Err(refused.remove(0)),
        _ => Err(ConfigError::Several(refused)),
    }
}

/// [`read`], with every key the types refuse returned beside the configuration (each left at
/// its default) instead of an error: `antenne validate` goes on to check the rest. `Err` only
/// when the file cannot be read or is not TOML.
pub fn read_all(
    file: Option<&Path>,
    env: &[(String, String)],
) -> Result<(ApplianceConfig, Vec<ConfigError>), ConfigError> {
    let shown = file.map_or_else(|| "defaults".to_string(), |f| f.display().to_string());
    let mut table: toml::Table = match file {
        Some(f) => {
            let text = std::fs::read_to_string(f).map_err(|e| ConfigError::Read {
                file: shown.clone(),
                source: e,
            })?;
            toml::from_str(&text).map_err(|e| ConfigError::Parse {
                file: shown.clone(),
                message: e.message().to_string(),
            })?
        }
        None => toml::Table::new(),
    };
    let mut from_env = Vec::new();
    for (k, v) in env {
        let Some(rest) = k.strip_prefix("ANTENNE_") else {
            continue;
        };
        let lower = rest.to_ascii_lowercase();
        let Some(section) = SECTIONS
            .iter()
            .find(|s| lower.starts_with(&format!("{s}_")))
        else {
            continue;
        };
        let key = &lower[section.len() + 1..];
        // A value that reads as TOML (a list, a number) is taken as such, else as a string.
        let value = toml::from_str::<toml::Table>(&format!("v = {v}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(v.clone()));
        let sec = table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = sec {
            t.insert(key.to_string(), value);
        }
        from_env.push(k.clone());
    }
    let origin = if from_env.is_empty() {
        shown.clone()
    } else {
        format!("{shown} + {}", from_env.join(", "))
    };
    let refused = super::refused::refused::<ApplianceConfig>(&table, &toml::Table::new());
    let taken = super::refused::without(&table, &refused);
    // Keys refused only together leave nothing to take apart: the defaults are checked.
    let mut cfg: ApplianceConfig = toml::Value::Table(taken).try_into().unwrap_or_default();
    let refused = refused
        .into_iter()
        .map(|r| ConfigError::Refused {
            origin: origin.clone(),
            key: r.path,
            message: r.why,
        })
        .collect();
    cfg.origin = origin;
    Ok((cfg, refused))
}

/// `cfg` with its relative ingest roots made absolute inside the data directory.
pub fn with_absolute_roots(mut cfg: ApplianceConfig) -> ApplianceConfig {
    // Relative ingest roots lie in the data directory, as absolute paths from here on.
    let data =
        std::path::absolute(&cfg.storage.data_dir).unwrap_or_else(|_| cfg.storage.data_dir.clone());
    for r in &mut cfg.ingest.roots {
        if r.is_relative() {
            *r = data.join(&*r);
        }
    }
    cfg
}

/// Every mistake in `c`, each naming its key.
pub fn problems(c: &ApplianceConfig) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    let mut bad = |key: &'static str, message: String| {
        errs.push(ConfigError::Invalid {
            origin: c.origin.clone(),
            key,
            message,
        })
    };
    check_places(c, &mut bad);
    check_fields(c, &mut bad);
    check_limits(c, &mut bad);
    check_roots(c, &mut bad);
    check_live(c, &mut bad);
    super::playout::check(&c.playout, &mut bad);
    for (key, m) in super::delivery::problems(&c.delivery) {
        bad(key, m);
    }
    for (key, m) in c.storages.problems() {
        bad(key, m);
    }
    errs
}

/// The address, the data directory, the catalog's database, naming and the backend.
fn check_places(c: &ApplianceConfig, bad: &mut impl FnMut(&'static str, String)) {
    if c.server.listen.parse::<SocketAddr>().is_err() {
        bad(
            "server.listen",
            format!("{:?} is not an address:port", c.server.listen),
        );
    }
    if c.storage.data_dir.as_os_str().is_empty() {
        bad("storage.data_dir", "must not be empty".into());
    }
    let url = &c.catalog.url;
    if !(url.is_empty()
        || url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://"))
    {
        bad(
            "catalog.url",
            format!("{url:?}: use sqlite:PATH, postgres://… or leave empty"),
        );
    }
    if let Err(e) = crate::naming::Template::parse(&c.naming.template) {
        bad("naming.template", e.why);
    }
    if c.naming.channel.is_empty()
        || !c
            .naming
            .channel
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
    {
        bad(
            "naming.channel",
            format!("{:?}: letters, digits and _ only", c.naming.channel),
        );
    }
    if !matches!(
        c.transcode.backend.as_str(),
        "auto" | "software" | "nvenc" | "vaapi" | "qsv"
    ) {
        bad(
            "transcode.backend",
            format!(
                "{:?} is not auto, software, nvenc, vaapi or qsv",
                c.transcode.backend
            ),
        );
    }
}

/// The catalog's custom fields.
fn check_fields(c: &ApplianceConfig, bad: &mut impl FnMut(&'static str, String)) {
    let mut names = BTreeMap::new();
    for f in &c.catalog.fields {
        let ok = !f.name.is_empty()
            && f.name.len() <= 64
            && f.name
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_');
        if !ok {
            bad(
                "catalog.fields",
                format!("{:?}: a field name is 1-64 of a-z, 0-9 and _", f.name),
            );
        }
        if names.insert(f.name.clone(), ()).is_some() {
            bad("catalog.fields", format!("{:?} is declared twice", f.name));
        }
        if (f.kind == FieldType::Choice) == f.choices.is_empty() {
            bad(
                "catalog.fields",
                format!(
                    "{:?}: choices are given for, and only for, a field of type \"choice\"",
                    f.name
                ),
            );
        }
    }
}

/// Sessions, job leases and timeouts, GPUs, the appliance's name and the request timeout.
fn check_limits(c: &ApplianceConfig, bad: &mut impl FnMut(&'static str, String)) {
    if c.auth.session_hours == 0 || c.auth.token_max_days == 0 || c.auth.login_attempts == 0 {
        bad(
            "auth",
            "session_hours, token_max_days and login_attempts must be at least 1".into(),
        );
    }
    if c.jobs.hang_timeout_s == 0 || c.jobs.lease_s < 5 {
        bad(
            "jobs",
            "hang_timeout_s must be at least 1 and lease_s at least 5".into(),
        );
    }
    if c.jobs.gpu_sessions == 0 || c.jobs.gpu_max_failures == 0 {
        bad(
            "jobs",
            "gpu_sessions and gpu_max_failures must be at least 1".into(),
        );
    }
    let gpus = c.jobs.gpus.trim();
    if !matches!(gpus, "auto" | "none" | "") {
        for g in gpus.split(',') {
            let b = g.trim().split(':').next().unwrap_or_default();
            if super::Backend::gpu_named(b).is_none() {
                bad(
                    "jobs.gpus",
                    format!(
                        "{g:?}: auto, none, or a list of nvenc:N, vaapi:/dev/dri/renderDN, qsv"
                    ),
                );
            }
        }
    }
    if !c
        .jobs
        .appliance
        .chars()
        .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' || ch == '.')
    {
        bad("jobs.appliance", "letters, digits, - _ and . only".into());
    }
    if c.server.request_timeout_s == 0 {
        bad("server.request_timeout_s", "must be at least 1".into());
    }
    if c.ingest.upload_expiry_s == 0 {
        bad("ingest.upload_expiry_s", "must be at least 1".into());
    }
}

/// The scheduled recordings: each names a declared source, a schedule and a duration.
fn check_recordings(
    c: &ApplianceConfig,
    sources: &BTreeMap<String, ()>,
    bad: &mut impl FnMut(&'static str, String),
) {
    for (i, r) in c.live.recordings.iter().enumerate() {
        let at = format!("[[live.recordings]] #{}", i + 1);
        match r.source.as_deref() {
            Some(s) if sources.contains_key(s) => {}
            Some(s) => bad(
                "live.recordings.source",
                format!("{at}: source {s:?} is not declared in [[live.sources]]"),
            ),
            None => bad(
                "live.recordings.source",
                format!("{at}: required: a declared source's name"),
            ),
        }
        if r.schedule.as_deref().is_none_or(|s| s.trim().is_empty()) {
            bad(
                "live.recordings.schedule",
                format!("{at}: required: `every <n>s|m|h` or a cron line"),
            );
        }
        if !r.duration_s.is_some_and(|d| (1..=7 * 86_400).contains(&d)) {
            bad(
                "live.recordings.duration_s",
                format!("{at}: required: 1-604800 seconds"),
            );
        }
        if r.segment_s.is_some_and(|s| !(1..=86_400).contains(&s)) {
            bad(
                "live.recordings.segment_s",
                format!("{at}: 1-86400 seconds"),
            );
        }
        if r.title
            .as_deref()
            .is_some_and(|t| t.trim().is_empty() || t.chars().count() > 200)
        {
            bad("live.recordings.title", format!("{at}: 1-200 characters"));
        }
    }
}

/// The live sources and outputs declared in the file.
fn check_live(c: &ApplianceConfig, bad: &mut impl FnMut(&'static str, String)) {
    if !(50..=60_000).contains(&c.live.loss_ms)
        || c.live.reader_queue == 0
        || !(1..=3600).contains(&c.live.preview_s)
    {
        bad(
            "live",
            "loss_ms must be 50-60000, reader_queue at least 1 and preview_s 1-3600".into(),
        );
    }
    if !(2..=3600).contains(&c.live.lease_s) {
        bad("live.lease_s", "2-3600 seconds".into());
    }
    let mut sources = BTreeMap::new();
    for s in &c.live.sources {
        if s.name.trim().is_empty() || sources.insert(s.name.clone(), ()).is_some() {
            bad(
                "live.sources",
                format!("{:?}: each source needs a name of its own", s.name),
            );
        }
    }
    let mut outputs = BTreeMap::new();
    for o in &c.live.outputs {
        if o.name.trim().is_empty() || outputs.insert(o.name.clone(), ()).is_some() {
            bad(
                "live.outputs",
                format!("{:?}: each output needs a name of its own", o.name),
            );
        }
        match (&o.source, o.source_id) {
            (Some(src), None) if sources.contains_key(src) => {}
            (Some(src), None) => bad(
                "live.outputs",
                format!("{:?}: source {src:?} is not declared", o.name),
            ),
            _ => bad(
                "live.outputs",
                format!(
                    "{:?}: name its source with `source` (a declared source's name)",
                    o.name
                ),
            ),
        }
    }
    check_recordings(c, &sources, bad);
}

/// The ingest roots.
fn check_roots(c: &ApplianceConfig, bad: &mut impl FnMut(&'static str, String)) {
    let mut seen = BTreeMap::new();
    for r in &c.ingest.roots {
        if r.as_os_str().is_empty()
            || r.components()
                .any(|p| matches!(p, std::path::Component::ParentDir))
        {
            bad(
                "ingest.roots",
                format!(
                    "{:?}: an absolute path, or one inside the data directory without ..",
                    r.display()
                ),
            );
        }
        if seen.insert(r.clone(), ()).is_some() {
            bad("ingest.roots", format!("{} is listed twice", r.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> PathBuf {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/firmware-config/antenne.toml"
        ))
    }

    #[test]
    fn shipped_file_loads_and_equals_the_defaults() {
        let c = load(Some(&shipped()), &[]).unwrap();
        let d = load(None, &[]).unwrap();
        assert_eq!(
            ApplianceConfig {
                origin: String::new(),
                ..c
            },
            ApplianceConfig {
                origin: String::new(),
                ..d
            }
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let env = vec![
            (
                "ANTENNE_SERVER_LISTEN".to_string(),
                "0.0.0.0:9000".to_string(),
            ),
            (
                "ANTENNE_INGEST_ROOTS".to_string(),
                "[\"/srv/a\", \"/srv/b\"]".to_string(),
            ),
            ("ANTENNE_INGEST_MAX_UPLOAD".to_string(), "5Gi".to_string()),
            ("ANTENNE_PROFILES_DIR".to_string(), "/elsewhere".to_string()),
        ];
        let c = load(Some(&shipped()), &env).unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:9000");
        assert_eq!(
            c.ingest.roots,
            vec![PathBuf::from("/srv/a"), PathBuf::from("/srv/b")]
        );
        assert_eq!(c.ingest.max_upload, ByteSize(5 << 30));
        let env = vec![(
            "ANTENNE_SERVER_TRUSTED_PROXIES".to_string(),
            "[\"127.0.0.1\", \"10.0.0.0/8\"]".to_string(),
        )];
        let c = load(Some(&shipped()), &env).unwrap();
        assert_eq!(c.server.trusted_proxies.len(), 2);
    }

    #[test]
    fn the_default_ingest_root_is_the_data_directorys_incoming() {
        let c = load(None, &[]).unwrap();
        let want = std::path::absolute("antenne-data/incoming").unwrap();
        assert_eq!(c.ingest.roots, vec![want]);
        let env = vec![
            (
                "ANTENNE_STORAGE_DATA_DIR".to_string(),
                "/srv/antenne".to_string(),
            ),
            (
                "ANTENNE_INGEST_ROOTS".to_string(),
                "[\"drop\", \"/mnt/in\"]".to_string(),
            ),
        ];
        let c = load(None, &env).unwrap();
        assert_eq!(
            c.ingest.roots,
            vec![PathBuf::from("/srv/antenne/drop"), PathBuf::from("/mnt/in")]
        );
        let env = vec![("ANTENNE_INGEST_ROOTS".to_string(), "[]".to_string())];
        assert!(
            load(None, &env).unwrap().ingest.roots.is_empty(),
            "none: uploads only"
        );
    }

    #[test]
    fn scheduled_recordings_report_every_mistake() {
        let mut c = ApplianceConfig::default();
        c.live.sources.push(LiveSource {
            name: "house".into(),
            kind: "udp".into(),
            ..LiveSource::default()
        });
        c.live.recordings = vec![
            LiveRecording {
                source: Some("house".into()),
                schedule: Some("every 1h".into()),
                duration_s: Some(600),
                ..LiveRecording::default()
            },
            LiveRecording {
                source: Some("elsewhere".into()),
                segment_s: Some(0),
                title: Some(" ".into()),
                ..LiveRecording::default()
            },
        ];
        let e: Vec<String> = problems(&c).iter().map(ToString::to_string).collect();
        let all = e.join("\n");
        for key in [
            "live.recordings.source",
            "live.recordings.schedule",
            "live.recordings.duration_s",
            "live.recordings.segment_s",
            "live.recordings.title",
        ] {
            assert!(all.contains(key), "{key} in {all}");
        }
        assert_eq!(e.len(), 5, "the first is right: {all}");
        assert!(all.contains("#2"), "{all}");
        let bad = toml::from_str::<Live>("[[recordings]]\nsource = \"a\"\nevery = 3\n");
        assert!(bad.is_err(), "unknown keys are refused");
    }

    #[test]
    fn errors_name_the_key() {
        let env = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let e = load(None, &env("ANTENNE_SERVER_LISTEN", "localhost"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("server.listen") && e.contains("ANTENNE_SERVER_LISTEN"),
            "{e}"
        );
        let e = load(None, &env("ANTENNE_NAMING_TEMPLATE", "{channel}-{year}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("naming.template") && e.contains("{year}"), "{e}");
        let e = load(None, &env("ANTENNE_NAMING_TEMPLATE", "{channel}-{yyyy}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("{seq}"), "{e}");
        let e = load(None, &env("ANTENNE_INGEST_ROOTS", "[\"../outside\"]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ingest.roots"), "{e}");
        let e = load(
            None,
            &env("ANTENNE_SERVER_TRUSTED_PROXIES", "[\"10.0.0.0/33\"]"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("ANTENNE_SERVER_TRUSTED_PROXIES") && e.contains("CIDR"),
            "{e}"
        );
        let e = load(None, &env("ANTENNE_SERVER_LISTNE", "x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("listne"), "unknown keys are refused: {e}");
        let dir = std::env::temp_dir().join(format!("antenne-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bad.toml");
        std::fs::write(&f, "[transcode]\nbackend = \"cuda\"\n").unwrap();
        let e = load(Some(&f), &[]).unwrap_err().to_string();
        assert!(
            e.contains("bad.toml") && e.contains("transcode.backend"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sizes() {
        assert_eq!(
            "200G".parse::<ByteSize>().unwrap(),
            ByteSize(200_000_000_000)
        );
        assert_eq!("64Ki".parse::<ByteSize>().unwrap(), ByteSize(65536));
        assert!("0".parse::<ByteSize>().is_err());
        assert!("12X".parse::<ByteSize>().is_err());
        assert!("99999999999T".parse::<ByteSize>().is_err());
    }
}
