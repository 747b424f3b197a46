//! The tests' own MPEG-TS conformance reader: the ETSI TR 101 290 priority 1 and 2 checks a live
//! output must pass (sync byte, PAT and PMT present and repeated, continuity counters per PID,
//! referenced PIDs present, transport errors, section CRCs, PCR interval and jumps, PTS on PES
//! starts), with each packet placed in time by interpolating the PCRs around it. Also a small
//! writer of hand-made packets, to prove the reader fails on broken streams.

use std::collections::BTreeMap;

pub const PACKET: usize = 188;

/// Limits a stream is held to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub pcr_ms: f64,
    pub psi_ms: f64,
    pub pts_ms: f64,
}

impl Default for Limits {
    fn default() -> Self {
        // PCR ≤ 40 ms (TR 101 290 2.3a), PAT/PMT ≤ 100 ms (the live output's promise; TR 101
        // 290 itself allows 500 ms), PTS ≤ 700 ms (2.5).
        Limits {
            pcr_ms: 40.0,
            psi_ms: 100.0,
            pts_ms: 700.0,
        }
    }
}

/// What the reader found: counts, worst intervals, and each error (first 50 kept per kind).
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub packets: usize,
    pub null_packets: usize,
    pub pat_count: usize,
    pub pmt_count: usize,
    pub pcr_count: usize,
    pub pes_starts: usize,
    pub max_pcr_interval_ms: f64,
    pub max_pat_interval_ms: f64,
    pub max_pmt_interval_ms: f64,
    /// Mean bit rate from the first to the last PCR.
    pub bitrate_bps: f64,
    pub errors: BTreeMap<&'static str, usize>,
    pub first_errors: Vec<String>,
    /// Elementary stream PIDs and their stream types, from the PMT.
    pub streams: Vec<(u16, u8)>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }

    fn error(&mut self, kind: &'static str, what: String) {
        *self.errors.entry(kind).or_default() += 1;
        if self.first_errors.len() < 50 {
            self.first_errors.push(format!("{kind}: {what}"));
        }
    }

    pub fn count(&self, kind: &str) -> usize {
        self.errors.get(kind).copied().unwrap_or(0)
    }
}

/// CRC-32/MPEG-2 of PSI sections.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

struct Packet<'a> {
    pid: u16,
    pusi: bool,
    tei: bool,
    cc: u8,
    has_payload: bool,
    discontinuity: bool,
    pcr: Option<u64>,
    payload: &'a [u8],
}

fn parse(p: &[u8]) -> Packet<'_> {
    let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
    let afc = (p[3] >> 4) & 3;
    let mut off = 4;
    let mut pcr = None;
    let mut discontinuity = false;
    if afc & 2 != 0 {
        let len = p[4] as usize;
        if len > 0 && 5 + len <= PACKET {
            let flags = p[5];
            discontinuity = flags & 0x80 != 0;
            if flags & 0x10 != 0 && len >= 7 {
                let b = &p[6..12];
                let base = (u64::from(b[0]) << 25)
                    | (u64::from(b[1]) << 17)
                    | (u64::from(b[2]) << 9)
                    | (u64::from(b[3]) << 1)
                    | (u64::from(b[4]) >> 7);
                let ext = (u64::from(b[4] & 1) << 8) | u64::from(b[5]);
                pcr = Some(base * 300 + ext);
            }
        }
        off = (5 + len).min(PACKET);
    }
    Packet {
        pid,
        pusi: p[1] & 0x40 != 0,
        tei: p[1] & 0x80 != 0,
        cc: p[3] & 0x0f,
        has_payload: afc & 1 != 0,
        discontinuity,
        pcr,
        payload: if afc & 1 != 0 { &p[off..] } else { &[] },
    }
}

/// A PSI section starting in this payload (pointer field followed), if it fits in it.
fn section(payload: &[u8]) -> Option<&[u8]> {
    let ptr = *payload.first()? as usize;
    let s = payload.get(1 + ptr..)?;
    if s.len() < 3 {
        return None;
    }
    let len = ((usize::from(s[1]) & 0x0f) << 8) | usize::from(s[2]);
    s.get(..3 + len)
}

/// Checks a captured stream (whole packets from its start).
pub fn check(data: &[u8], limits: Limits) -> Report {
    let mut r = Report::default();
    let n = data.len() / PACKET;
    r.packets = n;
    if !data.len().is_multiple_of(PACKET) {
        r.error(
            "1.1 TS_sync_loss",
            format!("{} bytes are not whole packets", data.len()),
        );
    }
    // Pass 1: where the PCR PID is and when its PCRs are, to place every packet in time.
    let mut pcr_pid: Option<u16> = None;
    for i in 0..n {
        let p = &data[i * PACKET..(i + 1) * PACKET];
        if p[0] != 0x47 {
            continue;
        }
        let pk = parse(p);
        if pk.pid != 0 && pk.pusi && pcr_pid.is_none() {
            if let Some(s) = section(pk.payload) {
                if s[0] == 0x02 && s.len() >= 12 {
                    pcr_pid = Some((u16::from(s[8] & 0x1f) << 8) | u16::from(s[9]));
                }
            }
        }
    }
    let mut pcrs: Vec<(usize, f64)> = Vec::new();
    for i in 0..n {
        let p = &data[i * PACKET..(i + 1) * PACKET];
        if p[0] == 0x47 {
            let pk = parse(p);
            if Some(pk.pid) == pcr_pid {
                if let Some(v) = pk.pcr {
                    pcrs.push((i, v as f64 / 27_000.0));
                }
            }
        }
    }
    if let (Some(a), Some(b)) = (pcrs.first(), pcrs.last()) {
        if b.0 > a.0 && b.1 > a.1 {
            r.bitrate_bps = ((b.0 - a.0) * PACKET * 8) as f64 / ((b.1 - a.1) / 1000.0);
        }
    }
    // Between two PCRs a packet's time is interpolated; before the first and after the last it
    // is extrapolated at the stream's mean rate.
    let ms_per_packet = if r.bitrate_bps > 0.0 {
        (PACKET * 8) as f64 / r.bitrate_bps * 1000.0
    } else {
        0.0
    };
    let time_ms = |i: usize| -> Option<f64> {
        if pcrs.len() < 2 {
            return None;
        }
        let k = pcrs.partition_point(|(j, _)| *j <= i);
        if k == 0 {
            let (j, t) = pcrs[0];
            return Some(t - (j - i) as f64 * ms_per_packet);
        }
        if k >= pcrs.len() {
            let (j, t) = pcrs[pcrs.len() - 1];
            return Some(t + (i - j) as f64 * ms_per_packet);
        }
        let (a, b) = (pcrs[k - 1], pcrs[k]);
        Some(a.1 + (b.1 - a.1) * (i as f64 - a.0 as f64) / (b.0 - a.0) as f64)
    };

    let mut last_cc: BTreeMap<u16, (u8, bool)> = BTreeMap::new();
    let mut pmt_pids: Vec<u16> = Vec::new();
    let mut es_pids: Vec<u16> = Vec::new();
    let mut seen: BTreeMap<u16, usize> = BTreeMap::new();
    let mut last_pat: Option<f64> = None;
    let mut last_pmt: BTreeMap<u16, f64> = BTreeMap::new();
    let mut last_pcr: Option<(usize, f64)> = None;
    let mut last_pts: BTreeMap<u16, f64> = BTreeMap::new();
    for i in 0..n {
        let p = &data[i * PACKET..(i + 1) * PACKET];
        if p[0] != 0x47 {
            r.error("1.2 Sync_byte_error", format!("packet {i}: 0x{:02x}", p[0]));
            continue;
        }
        let pk = parse(p);
        let t = time_ms(i);
        *seen.entry(pk.pid).or_default() += 1;
        if pk.tei {
            r.error("2.1 Transport_error", format!("packet {i} PID {}", pk.pid));
        }
        if pk.pid == 0x1fff {
            r.null_packets += 1;
            continue;
        }
        // 1.4: the counter steps by one on packets with payload; one repeat is allowed.
        match last_cc.get(&pk.pid) {
            Some(&(prev, prev_payload)) if !pk.discontinuity => {
                let expected = if pk.has_payload {
                    (prev + 1) & 0x0f
                } else {
                    prev
                };
                let duplicate = pk.has_payload && prev_payload && pk.cc == prev;
                if pk.cc != expected && !duplicate {
                    r.error(
                        "1.4 Continuity_count_error",
                        format!("packet {i} PID {}: {} after {prev}", pk.pid, pk.cc),
                    );
                }
            }
            _ => {}
        }
        last_cc.insert(pk.pid, (pk.cc, pk.has_payload));
        if pk.pid == 0 && pk.pusi {
            match section(pk.payload) {
                Some(s) if s[0] == 0x00 && s.len() >= 12 => {
                    check_crc(&mut r, i, "PAT", s);
                    r.pat_count += 1;
                    pmt_pids.clear();
                    for e in s[8..s.len() - 4].chunks_exact(4) {
                        let prog = u16::from_be_bytes([e[0], e[1]]);
                        let pid = (u16::from(e[2] & 0x1f) << 8) | u16::from(e[3]);
                        if prog != 0 {
                            pmt_pids.push(pid);
                        }
                    }
                    if let (Some(t), Some(l)) = (t, last_pat) {
                        r.max_pat_interval_ms = r.max_pat_interval_ms.max(t - l);
                        if t - l > limits.psi_ms {
                            r.error(
                                "1.3 PAT_error",
                                format!("packet {i}: {:.1} ms since the last PAT", t - l),
                            );
                        }
                    }
                    last_pat = t.or(last_pat);
                }
                _ => r.error("1.3 PAT_error", format!("packet {i}: PID 0 without a PAT")),
            }
        } else if pmt_pids.contains(&pk.pid) && pk.pusi {
            if let Some(s) = section(pk.payload).filter(|s| s[0] == 0x02 && s.len() >= 16) {
                check_crc(&mut r, i, "PMT", s);
                r.pmt_count += 1;
                let info = ((usize::from(s[10]) & 0x0f) << 8) | usize::from(s[11]);
                let mut k = 12 + info;
                let mut streams = Vec::new();
                while k + 5 <= s.len() - 4 {
                    let ty = s[k];
                    let pid = (u16::from(s[k + 1] & 0x1f) << 8) | u16::from(s[k + 2]);
                    let es_info = ((usize::from(s[k + 3]) & 0x0f) << 8) | usize::from(s[k + 4]);
                    streams.push((pid, ty));
                    k += 5 + es_info;
                }
                // Streams of sections (SCTE-35 cues, 0x86) carry no PES and no PTS.
                es_pids = streams
                    .iter()
                    .filter(|(_, t)| *t != 0x86)
                    .map(|(p, _)| *p)
                    .collect();
                r.streams = streams;
                if let (Some(t), Some(l)) = (t, last_pmt.get(&pk.pid)) {
                    r.max_pmt_interval_ms = r.max_pmt_interval_ms.max(t - l);
                    if t - l > limits.psi_ms {
                        r.error(
                            "1.5 PMT_error",
                            format!("packet {i}: {:.1} ms since the last PMT", t - l),
                        );
                    }
                }
                if let Some(t) = t {
                    last_pmt.insert(pk.pid, t);
                }
            }
        }
        if Some(pk.pid) == pcr_pid {
            if let Some(v) = pk.pcr {
                r.pcr_count += 1;
                let ms = v as f64 / 27_000.0;
                if let Some((_, l)) = last_pcr {
                    let d = ms - l;
                    r.max_pcr_interval_ms = r.max_pcr_interval_ms.max(d);
                    if d > limits.pcr_ms {
                        r.error(
                            "2.3a PCR_repetition_error",
                            format!("packet {i}: {d:.1} ms between PCRs"),
                        );
                    }
                    if !(0.0..=100.0).contains(&d) && !pk.discontinuity {
                        r.error(
                            "2.3b PCR_discontinuity_indicator_error",
                            format!("packet {i}: PCR jumps {d:.1} ms"),
                        );
                    }
                }
                last_pcr = Some((i, ms));
            }
        }
        if es_pids.contains(&pk.pid) && pk.pusi {
            let pl = pk.payload;
            if pl.len() >= 9 && pl[..3] == [0, 0, 1] {
                r.pes_starts += 1;
                let has_pts = pl[7] & 0x80 != 0;
                if !has_pts {
                    r.error(
                        "2.5 PTS_error",
                        format!("packet {i} PID {}: PES without PTS", pk.pid),
                    );
                } else if let Some(t) = t {
                    if let Some(l) = last_pts.get(&pk.pid) {
                        if t - l > limits.pts_ms {
                            r.error(
                                "2.5 PTS_error",
                                format!("packet {i} PID {}: {:.0} ms without PTS", pk.pid, t - l),
                            );
                        }
                    }
                    last_pts.insert(pk.pid, t);
                }
            } else {
                r.error(
                    "2.5 PTS_error",
                    format!(
                        "packet {i} PID {}: payload start without a PES header",
                        pk.pid
                    ),
                );
            }
        }
    }
    if r.pat_count == 0 {
        r.error("1.3 PAT_error", "no PAT".into());
    }
    if r.pmt_count == 0 {
        r.error("1.5 PMT_error", "no PMT".into());
    }
    if pcr_pid.is_some() && r.pcr_count < 2 {
        r.error("2.3a PCR_repetition_error", "fewer than two PCRs".into());
    }
    for (pid, _) in r.streams.clone() {
        if !seen.contains_key(&pid) {
            r.error(
                "1.6 PID_error",
                format!("PID {pid} is in the PMT but never sent"),
            );
        }
    }
    r
}

fn check_crc(r: &mut Report, i: usize, what: &str, s: &[u8]) {
    if crc32(s) != 0 {
        r.error("2.2 CRC_error", format!("packet {i}: {what} CRC"));
    }
}

/// Hand-made packets: a minimal stream of a PAT, a PMT (one H.264 PID carrying the PCR) and PES
/// starts with PTS, at a given time, for tests of the reader itself.
pub mod make {
    use super::{crc32, PACKET};

    pub const PMT_PID: u16 = 0x1000;
    pub const VIDEO_PID: u16 = 0x100;

    fn header(pid: u16, pusi: bool, cc: u8, afc: u8) -> Vec<u8> {
        vec![
            0x47,
            (u8::from(pusi) << 6) | ((pid >> 8) as u8 & 0x1f),
            pid as u8,
            (afc << 4) | (cc & 0x0f),
        ]
    }

    fn psi(pid: u16, cc: u8, mut section: Vec<u8>) -> Vec<u8> {
        let crc = crc32(&section);
        section.extend_from_slice(&crc.to_be_bytes());
        let mut p = header(pid, true, cc, 1);
        p.push(0);
        p.extend(section);
        p.resize(PACKET, 0xff);
        p
    }

    pub fn pat(cc: u8) -> Vec<u8> {
        let s = vec![
            0x00,
            0xb0,
            13,
            0,
            1,
            0xc1,
            0,
            0,
            0,
            1,
            0xe0 | (PMT_PID >> 8) as u8,
            PMT_PID as u8,
        ];
        psi(0, cc, s)
    }

    pub fn pmt(cc: u8) -> Vec<u8> {
        let s = vec![
            0x02,
            0xb0,
            18,
            0,
            1,
            0xc1,
            0,
            0,
            0xe0 | (VIDEO_PID >> 8) as u8,
            VIDEO_PID as u8,
            0xf0,
            0,
            0x1b,
            0xe0 | (VIDEO_PID >> 8) as u8,
            VIDEO_PID as u8,
            0xf0,
            0,
        ];
        psi(PMT_PID, cc, s)
    }

    /// A video packet starting a PES (with PTS when `pts`), carrying the PCR for `ms`.
    pub fn video(cc: u8, ms: f64, pts: bool) -> Vec<u8> {
        let mut p = header(VIDEO_PID, true, cc, 3);
        let base = (ms * 90.0) as u64;
        p.extend([
            7,
            0x10,
            (base >> 25) as u8,
            (base >> 17) as u8,
            (base >> 9) as u8,
            (base >> 1) as u8,
            ((base & 1) << 7) as u8 | 0x7e,
            0,
        ]);
        p.extend([0, 0, 1, 0xe0, 0, 0, 0x80]);
        if pts {
            p.extend([0x80, 5, 0x21, 0x00, 0x01, 0x00, 0x01]);
        } else {
            p.extend([0x00, 0]);
        }
        p.resize(PACKET, 0xaa);
        p
    }

    /// `seconds` of a clean stream: a video packet every 10 ms, PAT and PMT every 50 ms.
    pub fn stream(seconds: f64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let (mut cc_pat, mut cc_pmt, mut cc_v) = (0u8, 0u8, 0u8);
        let steps = (seconds * 100.0) as usize;
        for k in 0..steps {
            if k % 5 == 0 {
                out.push(pat(cc_pat));
                out.push(pmt(cc_pmt));
                cc_pat = (cc_pat + 1) & 15;
                cc_pmt = (cc_pmt + 1) & 15;
            }
            out.push(video(cc_v, k as f64 * 10.0, true));
            cc_v = (cc_v + 1) & 15;
        }
        out
    }
}
