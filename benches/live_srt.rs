//! SRT bench, each figure against libsrt's `srt-live-transmit` measured in the same run:
//!
//! 1. Loss recovery: ≥ 10,000 1316-byte packets through the seeded relay at 1 % loss with a
//!    latency of 3 × RTT and at 5 % with 5 × RTT (RTT 20 ms: 10 ms each way), antenne's output →
//!    antenne's input beside srt-live-transmit → srt-live-transmit, same relay settings, all four
//!    at once. Prints what each delivered and dropped.
//! 2. Passthrough: N SRT inputs × 10 Mb/s → N plain UDP outputs on loopback, beside N
//!    srt-live-transmit processes doing the same (SRT listener → UDP). The senders
//!    (srt-live-transmit callers) and the UDP pacer/counter (this binary re-run as a peer) are
//!    outside both measurements. Prints CPU time per delivered megabit of each and the ratio.
//!
//! `ANTENNE_BENCH_PACKETS` (default 10000), `ANTENNE_BENCH_STREAMS` (default 4),
//! `ANTENNE_BENCH_SECONDS` (default 10); 0 packets or 0 streams skips that part.

#[path = "../tests/common/relay.rs"]
mod relay;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use antenne::ingest::srt::SrtInput;
use antenne::link::{Chunk, ChunkSink, Link, LinkState};
use antenne::output::srt::SrtOutput;
use antenne::srt::{SrtMode, SrtSpec};
use relay::{Impairment, Relay};

const PEER_ENV: &str = "ANTENNE_SRT_BENCH_PEER";
/// Packets sent after the counted ones (see `antenne_through_relay`).
const TAIL: u64 = 400;

fn main() {
    if let Ok(plan) = std::env::var(PEER_ENV) {
        peer(&plan);
        return;
    }
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let packets = env("ANTENNE_BENCH_PACKETS", 10_000);
    let streams = env("ANTENNE_BENCH_STREAMS", 4) as usize;
    let seconds = env("ANTENNE_BENCH_SECONDS", 10);
    if packets > 0 {
        loss(packets);
    }
    if streams > 0 {
        passthrough(streams, seconds);
    }
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A 1316-byte message: 7 TS packets, the group number in the first one.
fn group(g: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(1316);
    for k in 0..7u8 {
        let mut p = [0xffu8; 188];
        let cc = (g as u8).wrapping_mul(7).wrapping_add(k) & 0x0f;
        p[..4].copy_from_slice(&[0x47, 0x01, 0x00, 0x10 | cc]);
        p[4..12].copy_from_slice(&g.to_be_bytes());
        p[12] = k;
        out.extend_from_slice(&p);
    }
    out
}

fn group_of(msg: &[u8]) -> Option<u64> {
    (msg.len() >= 12).then(|| u64::from_be_bytes(msg[4..12].try_into().unwrap()))
}

fn pace(mut send: impl FnMut(&[u8]), count: u64, pps: u64) {
    let start = Instant::now();
    for g in 0..count {
        let due = start + Duration::from_secs_f64(g as f64 / pps as f64);
        if let Some(w) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
        send(&group(g));
    }
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn slt(input: &str, output: &str) -> Proc {
    Proc(
        Command::new("srt-live-transmit")
            .args(["-q", "-c", "1316", input, output])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("srt-live-transmit (apt install srt-tools)"),
    )
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

// ---- 1. loss ---------------------------------------------------------------------------------

struct LossResult {
    received: usize,
    dropped: u64,
    identical: bool,
}

fn antenne_through_relay(packets: u64, imp: Impairment, latency: u32, seed: u64) -> LossResult {
    let port = free_port();
    let got = Arc::new(Mutex::new(Vec::<u8>::new()));
    let g = got.clone();
    let mut ls = SrtSpec::new(SrtMode::Listener, format!("127.0.0.1:{port}"));
    ls.latency_ms = latency;
    let input = SrtInput::start(
        ls,
        Arc::new(move |c: Chunk| g.lock().unwrap().extend_from_slice(&c)),
    )
    .unwrap();
    let relay = Relay::start(format!("127.0.0.1:{port}").parse().unwrap(), seed, imp);
    let mut cs = SrtSpec::new(SrtMode::Caller, format!("127.0.0.1:{}", relay.port()));
    cs.latency_ms = latency;
    let output = SrtOutput::start(cs).unwrap();
    assert!(wait_until(Duration::from_secs(10), || output.stats().state
        == LinkState::Live));
    // The feed goes on past the counted packets while the figures are read, as a live feed
    // does: a loss among the last packets of a feed that stops is never noticed by a receiver.
    let output = Arc::new(output);
    let o = output.clone();
    let feeder = std::thread::spawn(move || {
        pace(
            |m| o.deliver(Chunk::copy_from_slice(m)),
            packets + TAIL,
            1000,
        )
    });
    let want: Vec<u8> = (0..packets).flat_map(group).collect();
    wait_until(Duration::from_secs(10), || {
        got.lock().unwrap().len() >= want.len()
    });
    std::thread::sleep(Duration::from_millis(latency as u64 + 100));
    let dropped = input.stats().packets_dropped;
    let bytes = got.lock().unwrap().clone();
    let bytes = &bytes[..want.len().min(bytes.len())];
    feeder.join().unwrap();
    let received = bytes
        .chunks(1316)
        .filter_map(group_of)
        .filter(|g| *g < packets)
        .collect::<BTreeSet<_>>()
        .len();
    LossResult {
        received,
        dropped,
        identical: bytes == want,
    }
}

fn libsrt_through_relay(packets: u64, imp: Impairment, latency: u32, seed: u64) -> LossResult {
    let (srt_port, out_port, in_port) = (free_port(), free_port(), free_port());
    let out = UdpSocket::bind(("127.0.0.1", out_port)).unwrap();
    out.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _rx = slt(
        &format!("srt://:{srt_port}?mode=listener&latency={latency}"),
        &format!("udp://127.0.0.1:{out_port}"),
    );
    let relay = Relay::start(format!("127.0.0.1:{srt_port}").parse().unwrap(), seed, imp);
    let _tx = slt(
        &format!("udp://:{in_port}"),
        &format!("srt://127.0.0.1:{}?latency={latency}", relay.port()),
    );
    let flowing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = flowing.clone();
    let collector = std::thread::spawn(move || {
        let mut seen = BTreeSet::new();
        let mut bytes = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(n) = out.recv(&mut buf) {
            f.store(true, Ordering::Relaxed);
            match group_of(&buf[..n]) {
                Some(g) if g < packets => {
                    seen.insert(g);
                    bytes.extend_from_slice(&buf[..n]);
                }
                _ => {}
            }
        }
        (seen.len(), bytes)
    });
    let feed = UdpSocket::bind("127.0.0.1:0").unwrap();
    // srt-live-transmit discards what it reads before its SRT side is up: warm-up messages
    // (numbers past the counted ones) until one comes out at the far end.
    let warm_up = group(u64::MAX);
    let ready = wait_until(Duration::from_secs(10), || {
        let _ = feed.send_to(&warm_up, ("127.0.0.1", in_port));
        flowing.load(Ordering::Relaxed)
    });
    assert!(
        ready,
        "srt-live-transmit → srt-live-transmit did not connect"
    );
    pace(
        |m| {
            let _ = feed.send_to(m, ("127.0.0.1", in_port));
        },
        packets + TAIL,
        1000,
    );
    let (received, bytes) = collector.join().unwrap();
    let want: Vec<u8> = (0..packets).flat_map(group).collect();
    LossResult {
        received,
        dropped: packets - received as u64,
        identical: bytes == want,
    }
}

fn loss(packets: u64) {
    println!(
        "SRT loss recovery, {packets} packets of 1316 bytes at 1000/s, RTT 20 ms through the relay"
    );
    let delay = Duration::from_millis(10);
    let runs = [(0.01, 60u32, 3), (0.05, 100, 5)];
    let handles: Vec<_> = runs
        .iter()
        .enumerate()
        .flat_map(|(i, &(loss, latency, _))| {
            let seed = 100 + i as u64;
            let imp = Impairment::loss(loss, delay);
            [
                std::thread::spawn(move || antenne_through_relay(packets, imp, latency, seed)),
                std::thread::spawn(move || libsrt_through_relay(packets, imp, latency, seed)),
            ]
        })
        .collect();
    let mut results = handles.into_iter().map(|h| h.join().unwrap());
    for (loss, latency, k) in runs {
        let a = results.next().unwrap();
        let l = results.next().unwrap();
        println!(
            "  loss {:>2.0} %, latency {latency} ms ({k} × RTT): antenne {}/{packets} delivered, {} dropped, identical: {} | srt-live-transmit {}/{packets} delivered, {} dropped, identical: {}",
            loss * 100.0,
            a.received,
            a.dropped,
            a.identical,
            l.received,
            l.dropped,
            l.identical
        );
    }
}

// ---- 2. passthrough CPU ------------------------------------------------------------------------

/// CPU seconds (user + system) of this process.
fn self_cpu() -> f64 {
    proc_cpu(std::process::id())
}

/// CPU seconds of a process, from /proc/PID/stat (utime + stime in clock ticks).
fn proc_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields after the name: state is 0, utime is 11, stime is 12, in USER_HZ (100 on Linux).
    (ticks(11) + ticks(12)) / 100.0
}

fn passthrough(streams: usize, seconds: u64) {
    const RATE_BPS: u64 = 10_000_000;
    println!(
        "SRT passthrough, {streams} inputs × 10 Mb/s → UDP for {seconds} s (SRT latency 120 ms, loopback)"
    );
    // antenne: srt-live-transmit caller → our listener input → UDP via std::net.
    // libsrt:  srt-live-transmit caller → srt-live-transmit (SRT listener → UDP).
    let ours: Vec<(u16, u16, u16)> = (0..streams)
        .map(|_| (free_port(), free_port(), free_port()))
        .collect();
    let theirs: Vec<(u16, u16, u16)> = (0..streams)
        .map(|_| (free_port(), free_port(), free_port()))
        .collect();
    let delivered = Arc::new(AtomicU64::new(0));
    let mut inputs = Vec::new();
    for &(_, srt, out) in &ours {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let d = delivered.clone();
        let sink = move |c: Chunk| {
            if sock.send_to(&c, ("127.0.0.1", out)).is_ok() {
                d.fetch_add(c.len() as u64, Ordering::Relaxed);
            }
        };
        inputs.push(
            SrtInput::start(
                SrtSpec::new(SrtMode::Listener, format!("127.0.0.1:{srt}")),
                Arc::new(sink) as Arc<dyn ChunkSink>,
            )
            .unwrap(),
        );
    }
    let receivers: Vec<Proc> = theirs
        .iter()
        .map(|&(_, srt, out)| {
            slt(
                &format!("srt://:{srt}?mode=listener"),
                &format!("udp://127.0.0.1:{out}"),
            )
        })
        .collect();
    let mut senders = Vec::new();
    for &(udp, srt, _) in ours.iter().chain(&theirs) {
        senders.push(slt(
            &format!("udp://:{udp}"),
            &format!("srt://127.0.0.1:{srt}"),
        ));
    }
    assert!(
        wait_until(Duration::from_secs(30), || inputs
            .iter()
            .all(|i| i.stats().state == LinkState::Live)),
        "not all inputs connected"
    );
    std::thread::sleep(Duration::from_millis(500));
    let plan = format!(
        "{};{};{RATE_BPS};{seconds}",
        ours.iter()
            .chain(&theirs)
            .map(|p| p.0.to_string())
            .collect::<Vec<_>>()
            .join(","),
        ours.iter()
            .chain(&theirs)
            .map(|p| p.2.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut peer = Command::new(std::env::current_exe().unwrap())
        .env(PEER_ENV, plan)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(peer.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let (self0, theirs0): (f64, Vec<f64>) = (
        self_cpu(),
        receivers.iter().map(|p| proc_cpu(p.0.id())).collect(),
    );
    let counts: Vec<(u64, u64)> = lines
        .map_while(Result::ok)
        .filter_map(|l| {
            let (a, b) = l.split_once(' ')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect();
    let _ = peer.wait();
    let self_cpu_s = self_cpu() - self0;
    let theirs_cpu_s: f64 = receivers
        .iter()
        .zip(&theirs0)
        .map(|(p, c0)| proc_cpu(p.0.id()) - c0)
        .sum();
    let (ours_counts, theirs_counts) = counts.split_at(streams.min(counts.len()));
    let sent: u64 = ours_counts.iter().map(|c| c.0).sum();
    let ours_bytes: u64 = ours_counts.iter().map(|c| c.1).sum();
    let theirs_bytes: u64 = theirs_counts.iter().map(|c| c.1).sum();
    let drops: u64 = inputs.iter().map(|i| i.stats().packets_dropped).sum();
    let mb = |b: u64| b as f64 * 8.0 / 1e6;
    let per = |cpu: f64, b: u64| cpu * 1000.0 / mb(b).max(1e-9);
    println!(
        "  antenne:           {:.1} Mb delivered of {:.1} sent per side ({:.1} Mb out of the SRT inputs), {drops} dropped, {:.2} s CPU, {:.3} ms CPU per Mb",
        mb(ours_bytes),
        mb(sent),
        mb(delivered.load(Ordering::Relaxed)),
        self_cpu_s,
        per(self_cpu_s, ours_bytes)
    );
    println!(
        "  srt-live-transmit: {:.1} Mb delivered by {streams} processes, {:.2} s CPU, {:.3} ms CPU per Mb",
        mb(theirs_bytes),
        theirs_cpu_s,
        per(theirs_cpu_s, theirs_bytes)
    );
    println!(
        "  ratio antenne / srt-live-transmit (CPU per Mb): {:.2}",
        per(self_cpu_s, ours_bytes) / per(theirs_cpu_s, theirs_bytes)
    );
    drop(senders);
    drop(receivers);
    for i in &inputs {
        i.stop();
    }
}

/// The peer process: paces 1316-byte datagrams to the `send` ports at `rate` each for
/// `seconds`, counts what arrives on the `recv` ports, prints "datagrams_sent bytes" per port.
fn peer(plan: &str) {
    let parts: Vec<&str> = plan.split(';').collect();
    let ports = |s: &str| -> Vec<u16> { s.split(',').filter_map(|p| p.parse().ok()).collect() };
    let (send, recv) = (ports(parts[0]), ports(parts[1]));
    let rate: u64 = parts[2].parse().unwrap();
    let seconds: u64 = parts[3].parse().unwrap();
    let counters: Vec<Arc<AtomicU64>> = recv.iter().map(|_| Arc::new(AtomicU64::new(0))).collect();
    let readers: Vec<_> = recv
        .iter()
        .zip(&counters)
        .map(|(&p, c)| {
            let sock = UdpSocket::bind(("127.0.0.1", p)).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let c = c.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while let Ok(n) = sock.recv(&mut buf) {
                    c.fetch_add(n as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    println!("ready");
    let out = UdpSocket::bind("127.0.0.1:0").unwrap();
    let pps = rate / (1316 * 8);
    let start = Instant::now();
    let total = pps * seconds;
    let msg = group(0);
    for g in 0..total {
        let due = start + Duration::from_secs_f64(g as f64 / pps as f64);
        if let Some(w) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
        for &p in &send {
            let _ = out.send_to(&msg, ("127.0.0.1", p));
        }
    }
    for r in readers {
        let _ = r.join();
    }
    for c in &counters {
        println!("{} {}", total * 1316, c.load(Ordering::Relaxed));
    }
}
