//! HLS pull: an upstream HLS (or LL-HLS, read as plain HLS) playlist followed at its live edge.
//! A master playlist's variant is chosen once per (re)start: the one named, else the highest
//! `BANDWIDTH` under the cap. The media playlist is reloaded every target duration (half of it
//! when nothing was new); segments are fetched in order, MPEG-TS ones delivered as they are and
//! fMP4/CMAF ones (with an `EXT-X-MAP`) remuxed to TS by the engine, each spread over its own
//! duration so that readers see a steady feed. Playlist errors back off (1 s doubling to 10 s);
//! a segment that fails is counted and skipped. `http://` and `https://` (rustls: the system's
//! roots plus an optional CA file of the source's); a certificate refused is a clear reason on the
//! source's state, retried like any other error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;

use crate::av::io::ByteSource;
use crate::av::remux::{remux_stream, RemuxTarget};
use crate::link::{Chunk, ChunkSink, Link, LinkCounters, LinkState, LinkStats, TS_PACKET};

use super::looped::TsWriter;

/// Bytes per delivered chunk: seven TS packets.
const CHUNK: usize = 7 * TS_PACKET;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest playlist or segment taken.
const MAX_BODY: usize = 64 << 20;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Segments behind the live edge where a (re)start begins.
const EDGE_SEGMENTS: usize = 3;
/// Part of a segment's duration its delivery is spread over (a little less, to keep up).
const PACE: f64 = 0.9;

#[derive(Debug, thiserror::Error)]
pub enum HlsError {
    #[error("{url}: {why}")]
    Http { url: String, why: String },
    #[error("{url}: {}", describe(.source))]
    Client {
        url: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("{url}: not a playlist: {why}")]
    Playlist { url: String, why: String },
    #[error("cannot start: {0}")]
    Start(#[source] std::io::Error),
    #[error("CA file {path}: {why}")]
    CaFile { path: String, why: String },
}

#[derive(Debug, Clone)]
pub struct HlsPullSpec {
    pub url: String,
    pub variant: Option<String>,
    pub max_bandwidth: Option<u64>,
    /// PEM certificates trusted besides the system's roots (https).
    pub ca_file: Option<std::path::PathBuf>,
}

/// One variant of a master playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub uri: String,
    pub bandwidth: u64,
    pub name: Option<String>,
    pub video: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub seq: u64,
    pub uri: String,
    pub duration: f64,
    /// The `EXT-X-MAP` in force (fMP4 init segment).
    pub map: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Playlist {
    Master(Vec<Variant>),
    Media {
        target: f64,
        segments: Vec<Segment>,
        ended: bool,
    },
}

fn attr<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let mut rest = line.split_once(':')?.1;
    while !rest.is_empty() {
        let (k, after) = rest.split_once('=')?;
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], q[end + 1..].trim_start_matches(','))
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        if k.trim() == key {
            return Some(v);
        }
        rest = next;
    }
    None
}

/// Reads a playlist's text (pure).
pub fn parse(text: &str) -> Result<Playlist, String> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some("#EXTM3U") {
        return Err("no #EXTM3U header".into());
    }
    let mut variants = Vec::new();
    let mut pending_variant: Option<Variant> = None;
    let mut segments = Vec::new();
    let (mut target, mut seq, mut ended) = (0.0f64, 0u64, false);
    let mut duration: Option<f64> = None;
    let mut map: Option<String> = None;
    for l in lines {
        if let Some(v) = l.strip_prefix("#EXT-X-STREAM-INF:") {
            let line = format!("X:{v}");
            pending_variant = Some(Variant {
                uri: String::new(),
                bandwidth: attr(&line, "BANDWIDTH")
                    .and_then(|b| b.parse().ok())
                    .unwrap_or(0),
                name: attr(&line, "NAME").map(str::to_string),
                video: attr(&line, "VIDEO").map(str::to_string),
            });
        } else if let Some(v) = l.strip_prefix("#EXT-X-TARGETDURATION:") {
            target = v
                .parse()
                .map_err(|_| format!("bad target duration {v:?}"))?;
        } else if let Some(v) = l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            seq = v.parse().map_err(|_| format!("bad media sequence {v:?}"))?;
        } else if let Some(v) = l.strip_prefix("#EXTINF:") {
            let d = v.split(',').next().unwrap_or_default();
            duration = Some(d.parse().map_err(|_| format!("bad EXTINF {d:?}"))?);
        } else if l.starts_with("#EXT-X-MAP:") {
            map = attr(l, "URI").map(str::to_string);
        } else if l == "#EXT-X-ENDLIST" {
            ended = true;
        } else if l.starts_with('#') {
            continue;
        } else if let Some(mut v) = pending_variant.take() {
            v.uri = l.to_string();
            variants.push(v);
        } else if let Some(d) = duration.take() {
            segments.push(Segment {
                seq,
                uri: l.to_string(),
                duration: d,
                map: map.clone(),
            });
            seq += 1;
        }
    }
    if !variants.is_empty() {
        return Ok(Playlist::Master(variants));
    }
    if target <= 0.0 || !target.is_finite() {
        return Err("no #EXT-X-TARGETDURATION".into());
    }
    Ok(Playlist::Media {
        target,
        segments,
        ended,
    })
}

/// The variant named (by NAME, VIDEO or URI), else the highest bandwidth under `cap`, else the
/// lowest there is.
pub fn choose<'a>(vs: &'a [Variant], name: Option<&str>, cap: Option<u64>) -> Option<&'a Variant> {
    if let Some(n) = name {
        return vs
            .iter()
            .find(|v| v.name.as_deref() == Some(n) || v.video.as_deref() == Some(n) || v.uri == n);
    }
    let cap = cap.unwrap_or(u64::MAX);
    vs.iter()
        .filter(|v| v.bandwidth <= cap)
        .max_by_key(|v| v.bandwidth)
        .or_else(|| vs.iter().min_by_key(|v| v.bandwidth))
}

/// `uri` resolved against the playlist at `base`.
pub fn resolve(base: &str, uri: &str) -> String {
    if uri.contains("://") {
        return uri.to_string();
    }
    let base = base.split(['?', '#']).next().unwrap_or(base);
    if uri.starts_with('/') {
        let after = base.find("://").map_or(0, |i| i + 3);
        let host_end = base[after..].find('/').map_or(base.len(), |i| after + i);
        return format!("{}{uri}", &base[..host_end]);
    }
    match base.rfind('/') {
        Some(i) if i > base.find("://").map_or(0, |j| j + 2) => format!("{}{uri}", &base[..=i]),
        _ => format!("{base}/{uri}"),
    }
}

/// A running HLS pull.
pub struct HlsPull {
    counters: Arc<LinkCounters>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl HlsPull {
    pub fn start(spec: HlsPullSpec, sink: Arc<dyn ChunkSink>) -> Result<HlsPull, HlsError> {
        let client = client(spec.ca_file.as_deref())?;
        let counters = Arc::new(LinkCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (counters.clone(), stop.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(HlsError::Start)?;
        let thread = std::thread::Builder::new()
            .name("hls-pull".into())
            .spawn(move || rt.block_on(pull(spec, client, sink, c, s)))
            .map_err(HlsError::Start)?;
        Ok(HlsPull {
            counters,
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }
}

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Empty<hyper::body::Bytes>,
>;

/// The system's trusted roots, read once.
fn system_roots() -> &'static [rustls_pki_types::CertificateDer<'static>] {
    static ROOTS: std::sync::OnceLock<Vec<rustls_pki_types::CertificateDer<'static>>> =
        std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let r = rustls_native_certs::load_native_certs();
        for e in &r.errors {
            tracing::warn!(error = %e, "system certificate roots");
        }
        r.certs
    })
}

/// The certificates of a PEM file (at least one).
pub fn read_ca_file(
    path: &std::path::Path,
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, HlsError> {
    use rustls_pki_types::pem::PemObject;
    let bad = |why: String| HlsError::CaFile {
        path: path.display().to_string(),
        why,
    };
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(format!("cannot read: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE in it".into()));
    }
    Ok(certs)
}

/// An http/https client trusting the system's roots and those of `ca_file`.
fn client(ca_file: Option<&std::path::Path>) -> Result<Client, HlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(p) = ca_file {
        for c in read_ca_file(p)? {
            roots.add(c).map_err(|e| HlsError::CaFile {
                path: p.display().to_string(),
                why: format!("not a usable CA certificate: {e}"),
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HlsError::Start(std::io::Error::other(e)))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https),
    )
}

/// A client error as a reader needs it: a TLS refusal named as such, else the chain of causes.
fn describe(e: &hyper_util::client::legacy::Error) -> String {
    let mut causes = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(t) = find_tls(c) {
            return tls_reason(t);
        }
        causes.push(c.to_string());
        cur = c.source();
    }
    causes.dedup();
    causes.join(": ")
}

/// The TLS error in `e`, through the `io::Error`s that wrap it.
fn find_tls<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(t) = e.downcast_ref::<rustls::Error>() {
        return Some(t);
    }
    let inner = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    find_tls(inner)
}

fn tls_reason(e: &rustls::Error) -> String {
    use rustls::{CertificateError as C, Error as E};
    let why = match e {
        E::InvalidCertificate(C::UnknownIssuer) => {
            "the server's certificate is not signed by a trusted CA (give its CA in ca_file)"
                .to_string()
        }
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "the server's certificate is not valid for this host name".to_string()
        }
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "the server's certificate has expired".to_string()
        }
        E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "the server's certificate is not valid yet".to_string()
        }
        E::InvalidCertificate(c) => format!("the server's certificate is refused: {c:?}"),
        other => other.to_string(),
    };
    format!("TLS: {why}")
}

async fn get(client: &Client, url: &str) -> Result<Vec<u8>, HlsError> {
    let http = |why: String| HlsError::Http {
        url: url.to_string(),
        why,
    };
    let uri: hyper::Uri = url.parse().map_err(|_| http("not a URL".into()))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(http("only http:// and https:// are supported".into()));
    }
    let req = hyper::Request::get(uri)
        .header("user-agent", concat!("antenne/", env!("CARGO_PKG_VERSION")))
        .body(http_body_util::Empty::new())
        .map_err(|e| http(e.to_string()))?;
    let work = async {
        let r = client
            .request(req)
            .await
            .map_err(|source| HlsError::Client {
                url: url.to_string(),
                source,
            })?;
        if !r.status().is_success() {
            return Err(http(format!("HTTP {}", r.status())));
        }
        let body = http_body_util::Limited::new(r.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| http(format!("reading the body: {e}")))?;
        Ok(body.to_bytes().to_vec())
    };
    tokio::time::timeout(REQUEST_TIMEOUT, work)
        .await
        .map_err(|_| http(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())))?
}

/// Sleeps `d`, waking early when stopped; false when stopped.
async fn nap(d: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        tokio::time::sleep((until - Instant::now()).min(Duration::from_millis(50))).await;
    }
    !stop.load(Ordering::Relaxed)
}

/// Where a fetched segment's bytes go.
enum Feed {
    /// MPEG-TS, cut into chunks; the tail that is not a whole packet waits for the next segment.
    Ts(Vec<u8>),
    /// fMP4: the init segment then the fragments, to a remux running on its own thread.
    Fmp4 {
        tx: crossbeam_channel::Sender<Vec<u8>>,
        map: String,
        thread: JoinHandle<()>,
    },
}

async fn pull(
    spec: HlsPullSpec,
    client: Client,
    sink: Arc<dyn ChunkSink>,
    counters: Arc<LinkCounters>,
    stop: Arc<AtomicBool>,
) {
    let mut backoff = FIRST_BACKOFF;
    'session: while !stop.load(Ordering::Relaxed) {
        let r = session(&spec, &client, &sink, &counters, &stop, &mut backoff).await;
        if stop.load(Ordering::Relaxed) {
            break 'session;
        }
        if let Err(e) = r {
            tracing::warn!(url = %spec.url, error = %e, "hls pull");
            counters.error(e.to_string());
        }
        counters.set_state(LinkState::Lost);
        if !nap(backoff, &stop).await {
            break;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One run from the (master) playlist to an error; segments follow in order throughout.
async fn session(
    spec: &HlsPullSpec,
    client: &Client,
    sink: &Arc<dyn ChunkSink>,
    counters: &Arc<LinkCounters>,
    stop: &Arc<AtomicBool>,
    backoff: &mut Duration,
) -> Result<(), HlsError> {
    let bad = |url: &str, why: String| HlsError::Playlist {
        url: url.to_string(),
        why,
    };
    let mut url = spec.url.clone();
    let mut text = get(client, &url).await?;
    if let Playlist::Master(vs) =
        parse(&String::from_utf8_lossy(&text)).map_err(|w| bad(&url, w))?
    {
        let v = choose(&vs, spec.variant.as_deref(), spec.max_bandwidth).ok_or_else(|| {
            bad(
                &url,
                format!(
                    "no variant named {:?}",
                    spec.variant.as_deref().unwrap_or("")
                ),
            )
        })?;
        url = resolve(&url, &v.uri);
        text = get(client, &url).await?;
    }
    let mut next: Option<u64> = None;
    let mut feed: Option<Feed> = None;
    let r = async {
        loop {
            let Playlist::Media {
                target,
                segments,
                ended,
            } = parse(&String::from_utf8_lossy(&text)).map_err(|w| bad(&url, w))?
            else {
                return Err(bad(&url, "a master playlist where a media one was".into()));
            };
            let first = segments.first().map_or(0, |s| s.seq);
            let start = *next.get_or_insert_with(|| {
                segments
                    .len()
                    .checked_sub(EDGE_SEGMENTS)
                    .and_then(|i| segments.get(i))
                    .map_or(first, |s| s.seq)
            });
            if start < first {
                counters.error(format!(
                    "fell behind the playlist: segments {start}-{} missed",
                    first - 1
                ));
            }
            let mut fresh = false;
            for s in segments.iter().filter(|s| s.seq >= start) {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let seg_url = resolve(&url, &s.uri);
                let began = Instant::now();
                match get(client, &seg_url).await {
                    Ok(bytes) => {
                        counters.segment_fetched();
                        let map = s.map.as_ref().map(|m| resolve(&url, m));
                        deliver(
                            &mut feed, bytes, map, s.duration, began, client, sink, counters, stop,
                        )
                        .await?;
                        *backoff = FIRST_BACKOFF;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "hls pull: segment skipped");
                        counters.segment_failed();
                        counters.error(e.to_string());
                    }
                }
                next = Some(s.seq + 1);
                fresh = true;
            }
            if ended {
                return Err(bad(&url, "the playlist ended (#EXT-X-ENDLIST)".into()));
            }
            let wait = if fresh { target * 0.25 } else { target * 0.5 };
            if !nap(Duration::from_secs_f64(wait.clamp(0.1, 30.0)), stop).await {
                return Ok(());
            }
            text = match get(client, &url).await {
                Ok(t) => t,
                Err(e) => {
                    // A playlist that fails now and then is retried in place with a back-off.
                    counters.error(e.to_string());
                    tracing::warn!(error = %e, "hls pull: playlist reload");
                    counters.set_state(LinkState::Lost);
                    let mut wait = FIRST_BACKOFF / 2;
                    loop {
                        if !nap(wait, stop).await {
                            return Ok(());
                        }
                        match get(client, &url).await {
                            Ok(t) => break t,
                            Err(e) => counters.error(e.to_string()),
                        }
                        wait = (wait * 2).min(MAX_BACKOFF);
                    }
                }
            };
        }
    }
    .await;
    if let Some(Feed::Fmp4 { tx, thread, .. }) = feed {
        drop(tx);
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    r
}

#[allow(clippy::too_many_arguments)]
async fn deliver(
    feed: &mut Option<Feed>,
    bytes: Vec<u8>,
    map: Option<String>,
    duration: f64,
    began: Instant,
    client: &Client,
    sink: &Arc<dyn ChunkSink>,
    counters: &Arc<LinkCounters>,
    stop: &Arc<AtomicBool>,
) -> Result<(), HlsError> {
    // A change between TS and fMP4, or of init segment, starts the remux again.
    let same = match (&*feed, &map) {
        (Some(Feed::Ts(_)), None) => true,
        (Some(Feed::Fmp4 { map: m, .. }), Some(n)) => m == n,
        _ => false,
    };
    if !same {
        if let Some(Feed::Fmp4 { tx, thread, .. }) = feed.take() {
            drop(tx);
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        *feed = Some(match &map {
            None => Feed::Ts(Vec::new()),
            Some(m) => {
                let init = get(client, m).await?;
                let (tx, src) = ByteSource::channel("hls-in.mp4", 64);
                let out = TsWriter::new(sink.clone(), counters.clone());
                let (c, s) = (counters.clone(), stop.clone());
                let thread = std::thread::Builder::new()
                    .name("hls-remux".into())
                    .spawn(move || {
                        if let Err(e) = remux_stream(&src, RemuxTarget::Writer(Box::new(out)), s) {
                            tracing::warn!(error = %e, "hls pull: remux");
                            c.error(e.to_string());
                        }
                    })
                    .map_err(HlsError::Start)?;
                let _ = tx.send(init);
                Feed::Fmp4 {
                    tx,
                    map: m.clone(),
                    thread,
                }
            }
        });
    }
    let Some(f) = feed.as_mut() else {
        return Ok(());
    };
    let pieces: Vec<Vec<u8>> = match f {
        Feed::Ts(rest) => {
            rest.extend_from_slice(&bytes);
            let whole = rest.len() / TS_PACKET * TS_PACKET;
            let out = rest[..whole].chunks(CHUNK).map(<[u8]>::to_vec).collect();
            rest.drain(..whole);
            out
        }
        Feed::Fmp4 { .. } => bytes.chunks(16 * 1024).map(<[u8]>::to_vec).collect(),
    };
    let span =
        Duration::from_secs_f64((duration * PACE).clamp(0.0, 60.0)).saturating_sub(began.elapsed());
    let n = pieces.len().max(1) as u32;
    let t0 = Instant::now();
    for (i, p) in pieces.into_iter().enumerate() {
        let due = t0 + span * i as u32 / n;
        let now = Instant::now();
        if due > now && !nap(due - now, stop).await {
            return Ok(());
        }
        match f {
            Feed::Ts(_) => {
                if p.first() != Some(&0x47) {
                    counters
                        .packets_malformed
                        .fetch_add((p.len() / TS_PACKET) as u64, Ordering::Relaxed);
                    continue;
                }
                if counters.state() != LinkState::Live {
                    counters.set_state(LinkState::Live);
                }
                counters.received(p.len(), (p.len() / TS_PACKET) as u64);
                sink.deliver(Chunk::from(p));
            }
            Feed::Fmp4 { tx, .. } => {
                let tx = tx.clone();
                let sent = tokio::task::spawn_blocking(move || {
                    tx.send_timeout(p, Duration::from_secs(5)).is_ok()
                })
                .await
                .unwrap_or(false);
                if !sent {
                    return Err(HlsError::Http {
                        url: "fMP4 remux".into(),
                        why: "the remux stopped taking data".into(),
                    });
                }
            }
        }
    }
    Ok(())
}

impl Link for HlsPull {
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

impl Drop for HlsPull {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_media_playlist_reads() {
        let p = parse(
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:40\n\
             #EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2.000,\nseg40.m4s\n#EXTINF:1.5,\nseg41.m4s\n",
        )
        .unwrap();
        let Playlist::Media {
            target,
            segments,
            ended,
        } = p
        else {
            panic!("media")
        };
        assert_eq!((target, ended, segments.len()), (2.0, false, 2));
        assert_eq!(segments[1].seq, 41);
        assert_eq!(segments[1].duration, 1.5);
        assert_eq!(segments[0].map.as_deref(), Some("init.mp4"));
    }

    #[test]
    fn a_variant_is_chosen_under_the_cap_or_by_name() {
        let p = parse(
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,NAME=\"low\"\nlow.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=3000000,CODECS=\"avc1.64001f,mp4a.40.2\"\nhigh.m3u8\n",
        )
        .unwrap();
        let Playlist::Master(vs) = p else {
            panic!("master")
        };
        assert_eq!(choose(&vs, None, None).unwrap().uri, "high.m3u8");
        assert_eq!(choose(&vs, None, Some(1_000_000)).unwrap().uri, "low.m3u8");
        assert_eq!(choose(&vs, None, Some(10)).unwrap().uri, "low.m3u8");
        assert_eq!(choose(&vs, Some("low"), None).unwrap().uri, "low.m3u8");
        assert!(choose(&vs, Some("none"), None).is_none());
    }

    #[test]
    fn uris_resolve_against_the_playlist() {
        let b = "http://h:8080/a/b/live.m3u8?x=1";
        assert_eq!(resolve(b, "s1.ts"), "http://h:8080/a/b/s1.ts");
        assert_eq!(resolve(b, "/c/s1.ts"), "http://h:8080/c/s1.ts");
        assert_eq!(resolve(b, "http://o/s.ts"), "http://o/s.ts");
    }

    #[test]
    fn garbage_is_refused() {
        assert!(parse("").is_err());
        assert!(parse("#EXTM3U\n#EXTINF:x,\na.ts\n").is_err());
        assert!(parse("#EXTM3U\nseg.ts\n").is_err());
    }
}
