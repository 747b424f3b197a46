//! SCTE-35 (ANSI/SCTE 35): `splice_info_section`s for a channel's breaks, and what puts them in an
//! MPEG-TS on their own PID: the PMT entry (stream_type 0x86, registration descriptor "CUEI"),
//! the sections packetized in place of null packets (a CBR multiplex keeps its rate), at the
//! PTS of the break's frame less a pre-roll, that PTS read from the video PES headers of the same
//! multiplex. FFmpeg's mpegts muxer (5.1 and later) writes a SCTE-35 data stream as private PES
//! (0x06), which no splicer reads, hence this.
//!
//! Pure: bytes in, bytes out. No libav, tokio or SQL.

use std::collections::VecDeque;

/// 90 kHz ticks wrap at 2^33.
const PTS_MASK: u64 = (1 << 33) - 1;
const TS: usize = 188;
const NULL_PID: u16 = 0x1FFF;

/// CRC-32/MPEG-2 (polynomial 0x04C11DB7, initial 0xFFFFFFFF, not reflected, no final xor).
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Big-endian bit writer.
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn put(&mut self, bits: u32, value: u64) {
        for i in (0..bits).rev() {
            self.acc = (self.acc << 1) | ((value >> i) & 1);
            self.n += 1;
            if self.n == 8 {
                self.out.push(self.acc as u8);
                self.acc = 0;
                self.n = 0;
            }
        }
    }

    fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.put(8, u64::from(x));
        }
    }

    fn done(self) -> Vec<u8> {
        debug_assert_eq!(self.n, 0, "whole bytes");
        self.out
    }
}

/// A segmentation descriptor's type (the ones a channel's breaks use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentationType {
    BreakStart,
    BreakEnd,
    ProviderAdStart,
    ProviderAdEnd,
}

impl SegmentationType {
    pub fn id(self) -> u8 {
        match self {
            SegmentationType::BreakStart => 0x22,
            SegmentationType::BreakEnd => 0x23,
            SegmentationType::ProviderAdStart => 0x30,
            SegmentationType::ProviderAdEnd => 0x31,
        }
    }
}

/// A `segmentation_descriptor` (program-level, delivery not restricted).
#[derive(Debug, Clone, PartialEq)]
pub struct Segmentation {
    pub event_id: u32,
    pub kind: SegmentationType,
    /// 90 kHz ticks.
    pub duration: Option<u64>,
    /// `segmentation_upid` of type 0x09 (ADI) when not empty: the house id, say.
    pub upid: String,
}

/// The splice commands a channel sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `splice_insert` at `pts` (90 kHz, the multiplex's clock): out of network with a break
    /// duration (auto-return), or back in.
    SpliceInsert {
        event_id: u32,
        out_of_network: bool,
        pts: u64,
        duration: Option<u64>,
        unique_program_id: u16,
    },
    /// `time_signal` at `pts` with segmentation descriptors.
    TimeSignal {
        pts: u64,
        segmentations: Vec<Segmentation>,
    },
    /// `splice_null`: the heartbeat that keeps the SCTE-35 PID present between cues.
    SpliceNull,
}

fn splice_time(b: &mut Bits, pts: u64) {
    b.put(1, 1);
    b.put(6, 0x3F);
    b.put(33, pts & PTS_MASK);
}

fn segmentation_descriptor(s: &Segmentation) -> Vec<u8> {
    let mut b = Bits::default();
    b.bytes(b"CUEI");
    b.put(32, u64::from(s.event_id));
    // cancel 0, compliance 1 (SCTE 35 2020+: `segmentation_event_id_compliance_indicator`),
    // reserved.
    b.put(1, 0);
    b.put(1, 1);
    b.put(6, 0x3F);
    // program_segmentation 1, duration flag, delivery_not_restricted 1, reserved.
    b.put(1, 1);
    b.put(1, u64::from(s.duration.is_some()));
    b.put(1, 1);
    b.put(5, 0x1F);
    if let Some(d) = s.duration {
        b.put(40, d);
    }
    let upid: Vec<u8> = s.upid.bytes().take(255).collect();
    if upid.is_empty() {
        b.put(8, 0x00);
        b.put(8, 0);
    } else {
        b.put(8, 0x09);
        b.put(8, upid.len() as u64);
        b.bytes(&upid);
    }
    b.put(8, u64::from(s.kind.id()));
    // segment_num, segments_expected.
    b.put(8, 1);
    b.put(8, 1);
    let body = b.done();
    let mut d = vec![0x02, body.len() as u8];
    d.extend(body);
    d
}

/// The whole `splice_info_section`, CRC included.
pub fn splice_info_section(cmd: &Command) -> Vec<u8> {
    let (ctype, command, descriptors) = match cmd {
        Command::SpliceInsert {
            event_id,
            out_of_network,
            pts,
            duration,
            unique_program_id,
        } => {
            let mut b = Bits::default();
            b.put(32, u64::from(*event_id));
            b.put(1, 0); // cancel
            b.put(7, 0x7F);
            b.put(1, u64::from(*out_of_network));
            b.put(1, 1); // program_splice
            b.put(1, u64::from(duration.is_some()));
            b.put(1, 0); // splice_immediate
            b.put(1, 1); // event_id_compliance
            b.put(3, 0x7);
            splice_time(&mut b, *pts);
            if let Some(d) = duration {
                b.put(1, 1); // auto_return
                b.put(6, 0x3F);
                b.put(33, d & PTS_MASK);
            }
            b.put(16, u64::from(*unique_program_id));
            b.put(8, 0); // avail_num
            b.put(8, 0); // avails_expected
            (0x05u8, b.done(), Vec::new())
        }
        Command::TimeSignal { pts, segmentations } => {
            let mut b = Bits::default();
            splice_time(&mut b, *pts);
            let d: Vec<u8> = segmentations
                .iter()
                .flat_map(segmentation_descriptor)
                .collect();
            (0x06u8, b.done(), d)
        }
        Command::SpliceNull => (0x00u8, Vec::new(), Vec::new()),
    };
    let mut b = Bits::default();
    b.put(8, 0xFC);
    b.put(1, 0); // section_syntax_indicator
    b.put(1, 0); // private_indicator
    b.put(2, 0x3); // sap_type: not specified
                   // section_length: what follows it, CRC included.
                   // protocol_version, encryption + pts_adjustment (40 bits), cw_index, tier + command length
                   // (24 bits), command type.
    let len = 1 + 5 + 1 + 3 + 1 + command.len() + 2 + descriptors.len() + 4;
    b.put(12, len as u64);
    b.put(8, 0); // protocol_version
    b.put(1, 0); // encrypted_packet
    b.put(6, 0); // encryption_algorithm
    b.put(33, 0); // pts_adjustment
    b.put(8, 0); // cw_index
    b.put(12, 0xFFF); // tier
    b.put(12, command.len() as u64);
    b.put(8, u64::from(ctype));
    b.bytes(&command);
    b.put(16, descriptors.len() as u64);
    b.bytes(&descriptors);
    let mut out = b.done();
    let crc = crc32_mpeg2(&out);
    out.extend(crc.to_be_bytes());
    out
}

/// One TS packet carrying a whole section (sections of a channel's cues are far below 183 bytes).
pub fn section_packet(pid: u16, cc: u8, section: &[u8]) -> Option<[u8; TS]> {
    if section.len() > TS - 5 {
        return None;
    }
    let mut p = [0xFFu8; TS];
    p[0] = 0x47;
    p[1] = 0x40 | ((pid >> 8) as u8 & 0x1F);
    p[2] = pid as u8;
    p[3] = 0x10 | (cc & 0x0F);
    p[4] = 0; // pointer_field
    p[5..5 + section.len()].copy_from_slice(section);
    Some(p)
}

fn pid_of(p: &[u8]) -> u16 {
    (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2])
}

/// Where a packet's payload starts (after the adaptation field), if it has one.
fn payload_start(p: &[u8]) -> Option<usize> {
    let afc = (p[3] >> 4) & 0x3;
    match afc {
        1 => Some(4),
        3 => {
            let s = 5 + usize::from(p[4]);
            (s < TS).then_some(s)
        }
        _ => None,
    }
}

/// The section a packet starts (payload_unit_start with a pointer field), as a slice to the
/// packet's end.
fn section_in(p: &[u8]) -> Option<&[u8]> {
    if p[1] & 0x40 == 0 {
        return None;
    }
    let s = payload_start(p)?;
    let at = s + 1 + usize::from(*p.get(s)?);
    p.get(at..)
}

/// The PTS of a PES starting in this packet, if any.
pub fn pes_pts(p: &[u8]) -> Option<u64> {
    if p.len() != TS || p[1] & 0x40 == 0 {
        return None;
    }
    let s = payload_start(p)?;
    let h = p.get(s..s + 14)?;
    if h[0..3] != [0, 0, 1] || h[7] & 0x80 == 0 {
        return None;
    }
    let t = &h[9..14];
    Some(
        (u64::from(t[0] >> 1) & 0x7) << 30
            | u64::from(t[1]) << 22
            | (u64::from(t[2]) >> 1) << 15
            | u64::from(t[3]) << 7
            | u64::from(t[4]) >> 1,
    )
}

/// A cue waiting for its time: built when the multiplex's clock is known.
#[derive(Debug, Clone, PartialEq)]
pub enum CueKind {
    /// `splice_insert` out (with the break's duration) or in.
    Insert {
        out: bool,
        duration_frames: Option<u64>,
    },
    /// `time_signal` with a Break Start (with duration) or Break End descriptor.
    Signal {
        start: bool,
        duration_frames: Option<u64>,
    },
}

/// A cue at an output frame (counted from the multiplex's first picture).
#[derive(Debug, Clone, PartialEq)]
pub struct Cue {
    pub frame: u64,
    pub event_id: u32,
    pub kind: CueKind,
    /// Carried as the UPID of segmentation descriptors (ADI), when not empty.
    pub upid: String,
}

/// What [`CueInserter`] did, for the caller's log and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    pub cue: Cue,
    /// The splice time written (90 kHz, the multiplex's clock).
    pub pts: u64,
    /// The multiplex's video PTS when the section went out.
    pub sent_at_pts: u64,
}

/// Rewrites a running MPEG-TS: the PMT gains the SCTE-35 PID, and each cue's section replaces a
/// null packet once the video has reached the cue's time less the pre-roll (or is appended when
/// no null packet comes for a while: a multiplex without padding).
pub struct CueInserter {
    pid: u16,
    /// Frame duration as 90 kHz ticks × `rate.0` / `rate.1`: 90000·den/num per frame.
    rate: (u32, u32),
    preroll: u64,
    pmt_pid: Option<u16>,
    video_pid: Option<u16>,
    base_pts: Option<u64>,
    last_pts: Option<u64>,
    cc: u8,
    pending: Vec<Cue>,
    ready: VecDeque<(Cue, u64)>,
    waited: u32,
    emitted: Vec<Emitted>,
    /// The video PTS when the last section (a cue or a heartbeat) went out.
    last_sent_pts: Option<u64>,
}

/// Between cues a `splice_null` goes out this often (90 kHz ticks): the PID the PMT lists
/// stays present (TR 101 290 1.6), and splicers see the cue path alive.
const HEARTBEAT_TICKS: u64 = 90_000;

impl CueInserter {
    /// `rate`: the house frame rate (num, den); `preroll_ticks`: 90 kHz ticks before the splice.
    pub fn new(pid: u16, rate: (u32, u32), preroll_ticks: u64) -> CueInserter {
        CueInserter {
            pid,
            rate: (rate.0.max(1), rate.1.max(1)),
            preroll: preroll_ticks,
            pmt_pid: None,
            video_pid: None,
            base_pts: None,
            last_pts: None,
            cc: 0,
            pending: Vec::new(),
            ready: VecDeque::new(),
            waited: 0,
            emitted: Vec::new(),
            last_sent_pts: None,
        }
    }

    /// 90 kHz ticks from the first picture to output frame `frame`.
    pub fn ticks(&self, frame: u64) -> u64 {
        (u128::from(frame) * 90000 * u128::from(self.rate.1) / u128::from(self.rate.0)) as u64
    }

    pub fn add(&mut self, cue: Cue) {
        self.pending.push(cue);
    }

    /// The sections sent so far (drained).
    pub fn take_emitted(&mut self) -> Vec<Emitted> {
        std::mem::take(&mut self.emitted)
    }

    /// The PTS of the multiplex's first picture, once seen.
    pub fn base_pts(&self) -> Option<u64> {
        self.base_pts
    }

    fn command(&self, cue: &Cue, pts: u64) -> Command {
        let dur = |f: Option<u64>| f.map(|f| self.ticks(f));
        match &cue.kind {
            CueKind::Insert {
                out,
                duration_frames,
            } => Command::SpliceInsert {
                event_id: cue.event_id,
                out_of_network: *out,
                pts,
                duration: if *out { dur(*duration_frames) } else { None },
                unique_program_id: 1,
            },
            CueKind::Signal {
                start,
                duration_frames,
            } => Command::TimeSignal {
                pts,
                segmentations: vec![Segmentation {
                    event_id: cue.event_id,
                    kind: if *start {
                        SegmentationType::BreakStart
                    } else {
                        SegmentationType::BreakEnd
                    },
                    duration: if *start { dur(*duration_frames) } else { None },
                    upid: cue.upid.clone(),
                }],
            },
        }
    }

    fn packet_for(&mut self, cue: &Cue, pts: u64) -> Option<[u8; TS]> {
        let section = splice_info_section(&self.command(cue, pts));
        let p = section_packet(self.pid, self.cc, &section)?;
        self.cc = (self.cc + 1) & 0x0F;
        self.last_sent_pts = self.last_pts;
        self.emitted.push(Emitted {
            cue: cue.clone(),
            pts,
            sent_at_pts: self.last_pts.unwrap_or(0),
        });
        Some(p)
    }

    /// Passes a chunk of whole packets through, returning what goes on.
    pub fn process(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len() + TS);
        for p in chunk.chunks(TS) {
            if p.len() != TS || p[0] != 0x47 {
                out.extend_from_slice(p);
                continue;
            }
            let pid = pid_of(p);
            if pid == 0 {
                self.read_pat(p);
            } else if Some(pid) == self.pmt_pid {
                if let Some(np) = self.rewrite_pmt(p) {
                    out.extend_from_slice(&np);
                    continue;
                }
            } else if Some(pid) == self.video_pid {
                if let Some(pts) = pes_pts(p) {
                    self.on_video_pts(pts);
                }
            }
            if !self.ready.is_empty() {
                self.waited += 1;
                if pid == NULL_PID {
                    let (cue, pts) = self.ready.pop_front().expect("not empty");
                    if let Some(np) = self.packet_for(&cue, pts) {
                        out.extend_from_slice(&np);
                        self.waited = 0;
                        continue;
                    }
                }
            }
            if pid == NULL_PID && self.ready.is_empty() && self.pmt_pid.is_some() {
                if let Some(np) = self.heartbeat() {
                    out.extend_from_slice(&np);
                    continue;
                }
            }
            out.extend_from_slice(p);
            if self.waited > 64 {
                if let Some((cue, pts)) = self.ready.pop_front() {
                    if let Some(np) = self.packet_for(&cue, pts) {
                        out.extend_from_slice(&np);
                    }
                }
                self.waited = 0;
            }
        }
        out
    }

    /// A `splice_null` in place of a null packet, when none has gone out for a while.
    fn heartbeat(&mut self) -> Option<[u8; TS]> {
        let now = self.last_pts?;
        if self
            .last_sent_pts
            .is_some_and(|t| now.wrapping_sub(t) & PTS_MASK < HEARTBEAT_TICKS)
        {
            return None;
        }
        let p = section_packet(
            self.pid,
            self.cc,
            &splice_info_section(&Command::SpliceNull),
        )?;
        self.cc = (self.cc + 1) & 0x0F;
        self.last_sent_pts = Some(now);
        Some(p)
    }

    fn on_video_pts(&mut self, pts: u64) {
        if self.base_pts.is_none() {
            self.base_pts = Some(pts);
        }
        let base = self.base_pts.unwrap_or(pts);
        // Relative to the first picture, unwrapped (the first picture is the earliest: an IDR).
        let rel = pts.wrapping_sub(base) & PTS_MASK;
        let rel_last = self.last_pts.map(|l| l.wrapping_sub(base) & PTS_MASK);
        // Pictures come in decode order: keep the furthest presentation time reached, ignoring
        // wrap-around (a 26-hour clock) by taking forward steps below half the range only.
        let forward = match rel_last {
            None => true,
            Some(l) => {
                let step = rel.wrapping_sub(l) & PTS_MASK;
                step > 0 && step < (1 << 32)
            }
        };
        if forward {
            self.last_pts = Some(pts);
        }
        let reached = self.last_pts.unwrap_or(pts);
        let reached_rel = reached.wrapping_sub(base) & PTS_MASK;
        let mut i = 0;
        while i < self.pending.len() {
            let t = self.ticks(self.pending[i].frame);
            if reached_rel + self.preroll >= t {
                let cue = self.pending.remove(i);
                self.ready.push_back((cue, (base + t) & PTS_MASK));
            } else {
                i += 1;
            }
        }
    }

    fn read_pat(&mut self, p: &[u8]) {
        let Some(s) = section_in(p) else { return };
        if s.len() < 8 || s[0] != 0x00 {
            return;
        }
        let len = (usize::from(s[1] & 0x0F) << 8) | usize::from(s[2]);
        let end = (3 + len).saturating_sub(4).min(s.len());
        let mut i = 8;
        while i + 4 <= end {
            let program = u16::from_be_bytes([s[i], s[i + 1]]);
            let pid = (u16::from(s[i + 2] & 0x1F) << 8) | u16::from(s[i + 3]);
            if program != 0 {
                self.pmt_pid = Some(pid);
                return;
            }
            i += 4;
        }
    }

    /// The PMT with the SCTE-35 stream and the CUEI registration added (None: left as it is).
    fn rewrite_pmt(&mut self, p: &[u8]) -> Option<[u8; TS]> {
        let s = section_in(p)?;
        let sect_at = TS - s.len();
        if s.len() < 12 || s[0] != 0x02 {
            return None;
        }
        let len = (usize::from(s[1] & 0x0F) << 8) | usize::from(s[2]);
        let total = 3 + len;
        if total > s.len() || total < 16 {
            return None;
        }
        let pil = (usize::from(s[10] & 0x0F) << 8) | usize::from(s[11]);
        let es_start = 12 + pil;
        let es_end = total - 4;
        let mut i = es_start;
        while i + 5 <= es_end {
            let st = s[i];
            let pid = (u16::from(s[i + 1] & 0x1F) << 8) | u16::from(s[i + 2]);
            let il = (usize::from(s[i + 3] & 0x0F) << 8) | usize::from(s[i + 4]);
            if matches!(st, 0x1B | 0x02 | 0x24 | 0x01 | 0x10) && self.video_pid.is_none() {
                self.video_pid = Some(pid);
            }
            if pid == self.pid {
                // Already carries ours (a second pass through).
                return None;
            }
            i += 5 + il;
        }
        let reg = [0x05u8, 4, b'C', b'U', b'E', b'I'];
        let mut n = Vec::with_capacity(total + 16);
        n.extend_from_slice(&s[..10]);
        let new_pil = pil + reg.len();
        n.push(0xF0 | ((new_pil >> 8) as u8 & 0x0F));
        n.push(new_pil as u8);
        n.extend_from_slice(&reg);
        n.extend_from_slice(&s[12..es_end]);
        n.extend_from_slice(&[
            0x86,
            0xE0 | ((self.pid >> 8) as u8 & 0x1F),
            self.pid as u8,
            0xF0,
            0x00,
        ]);
        let new_len = n.len() - 3 + 4;
        n[1] = (n[1] & 0xF0) | ((new_len >> 8) as u8 & 0x0F);
        n[2] = new_len as u8;
        let crc = crc32_mpeg2(&n);
        n.extend(crc.to_be_bytes());
        if sect_at + n.len() > TS {
            return None;
        }
        let mut out = [0xFFu8; TS];
        out[..sect_at].copy_from_slice(&p[..sect_at]);
        out[sect_at..sect_at + n.len()].copy_from_slice(&n);
        Some(out)
    }
}

/// A break as live HLS signals it (RFC 8216 §4.3.2.7.1, and the legacy cue tags).
#[derive(Debug, Clone, PartialEq)]
pub struct HlsCue {
    pub id: String,
    /// Seconds of media from the playlist's first segment.
    pub start_s: f64,
    pub duration_s: f64,
    /// The out point's wall time, RFC 3339.
    pub start_date: String,
    pub end_date: String,
    /// The `splice_info_section`s of the out and in points.
    pub out_section: Vec<u8>,
    pub in_section: Vec<u8>,
}

fn hex(b: &[u8]) -> String {
    let mut s = String::from("0x");
    for x in b {
        s.push_str(&format!("{x:02X}"));
    }
    s
}

/// Adds the cues to a media playlist: `#EXT-X-DATERANGE` with `SCTE35-OUT` and
/// `#EXT-X-CUE-OUT` before the segment holding a break's start, `#EXT-X-CUE-OUT-CONT` before
/// those inside it, `#EXT-X-DATERANGE` with `SCTE35-IN` and `#EXT-X-CUE-IN` before the segment
/// holding its end. `starts` keeps each media sequence number's start time across calls (a
/// sliding window forgets the segments before it).
pub fn decorate_playlist(
    text: &str,
    starts: &mut std::collections::BTreeMap<u64, f64>,
    cues: &[HlsCue],
) -> String {
    let mut seq: u64 = 0;
    let mut out = String::with_capacity(text.len() + 512);
    let mut pending: Vec<&str> = Vec::new();
    let mut dur: Option<f64> = None;
    let mut idx: u64 = 0;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            seq = v.trim().parse().unwrap_or(0);
        }
        if line.starts_with("#EXT-X-PROGRAM-DATE-TIME") || line.starts_with("#EXTINF:") {
            if let Some(v) = line.strip_prefix("#EXTINF:") {
                dur = v.split(',').next().and_then(|d| d.trim().parse().ok());
            }
            pending.push(line);
            continue;
        }
        if !line.starts_with('#') && !line.trim().is_empty() && dur.is_some() {
            let n = seq + idx;
            let d = dur.take().unwrap_or(0.0);
            let start = match starts.get(&n) {
                Some(s) => *s,
                None => {
                    let s = match n
                        .checked_sub(1)
                        .and_then(|p| starts.get(&p).map(|s| (p, *s)))
                    {
                        Some((_, s)) => s + starts.get(&u64::MAX).copied().unwrap_or(0.0),
                        None => 0.0,
                    };
                    starts.insert(n, s);
                    s
                }
            };
            // The last segment's length, for the next one's start.
            starts.insert(u64::MAX, d);
            let end = start + d;
            for c in cues {
                let stop = c.start_s + c.duration_s;
                if (start..end).contains(&c.start_s) {
                    out.push_str(&format!(
                        "#EXT-X-DATERANGE:ID=\"{}\",START-DATE=\"{}\",PLANNED-DURATION={:.3},SCTE35-OUT={}\n#EXT-X-CUE-OUT:{:.3}\n",
                        c.id, c.start_date, c.duration_s, hex(&c.out_section), c.duration_s
                    ));
                } else if (start..end).contains(&stop) {
                    out.push_str(&format!(
                        "#EXT-X-DATERANGE:ID=\"{}\",START-DATE=\"{}\",END-DATE=\"{}\",DURATION={:.3},SCTE35-IN={}\n#EXT-X-CUE-IN\n",
                        c.id, c.start_date, c.end_date, c.duration_s, hex(&c.in_section)
                    ));
                } else if c.start_s < start && start < stop {
                    out.push_str(&format!(
                        "#EXT-X-CUE-OUT-CONT:{:.3}/{:.3}\n",
                        start - c.start_s,
                        c.duration_s
                    ));
                }
            }
            for p in pending.drain(..) {
                out.push_str(p);
                out.push('\n');
            }
            out.push_str(line);
            out.push('\n');
            idx += 1;
            continue;
        }
        for p in pending.drain(..) {
            out.push_str(p);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_the_check_string() {
        // The CRC-32/MPEG-2 catalogue check value.
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_E6E7);
    }

    #[test]
    fn a_section_ends_in_its_crc() {
        let s = splice_info_section(&Command::SpliceInsert {
            event_id: 7,
            out_of_network: true,
            pts: 900_000,
            duration: Some(2_700_000),
            unique_program_id: 1,
        });
        assert_eq!(s[0], 0xFC);
        let len = (usize::from(s[1] & 0x0F) << 8) | usize::from(s[2]);
        assert_eq!(len + 3, s.len());
        // A section with its CRC appended has a CRC of 0.
        assert_eq!(crc32_mpeg2(&s), 0);
    }

    #[test]
    fn a_playlist_gets_its_cues() {
        let pl = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:1.000000,\nseg_0.ts\n#EXTINF:1.000000,\nseg_1.ts\n#EXTINF:1.000000,\nseg_2.ts\n#EXTINF:1.000000,\nseg_3.ts\n";
        let cue = HlsCue {
            id: "11".into(),
            start_s: 1.6,
            duration_s: 1.2,
            start_date: "2027-01-15T08:00:01.600Z".into(),
            end_date: "2027-01-15T08:00:02.800Z".into(),
            out_section: vec![0xFC, 0x30],
            in_section: vec![0xFC, 0x31],
        };
        let mut starts = std::collections::BTreeMap::new();
        let d = decorate_playlist(pl, &mut starts, std::slice::from_ref(&cue));
        let lines: Vec<&str> = d.lines().collect();
        let at = |p: &str| lines.iter().position(|l| l.starts_with(p)).unwrap();
        assert!(
            at("#EXT-X-CUE-OUT:1.200") < at("seg_1.ts") && at("#EXT-X-CUE-OUT:") > at("seg_0.ts")
        );
        assert!(lines.contains(&"#EXT-X-CUE-IN") && at("#EXT-X-CUE-IN") < at("seg_2.ts"));
        assert!(d.contains("SCTE35-OUT=0xFC30") && d.contains("SCTE35-IN=0xFC31"));
        // The window slides: segment 2 is now first, and keeps its time.
        let pl2 = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:2\n#EXTINF:1.000000,\nseg_2.ts\n#EXTINF:1.000000,\nseg_3.ts\n";
        let d2 = decorate_playlist(pl2, &mut starts, &[cue]);
        assert!(
            d2.find("#EXT-X-CUE-IN").unwrap() < d2.find("seg_2.ts").unwrap(),
            "{d2}"
        );
    }

    #[test]
    fn pes_pts_is_read_back() {
        let mut p = [0xFFu8; TS];
        p[..4].copy_from_slice(&[0x47, 0x41, 0x00, 0x10]);
        let pts: u64 = 0x1_2345_6789 & PTS_MASK;
        let h = [
            0,
            0,
            1,
            0xE0,
            0,
            0,
            0x80,
            0x80,
            5,
            0x21 | (((pts >> 30) as u8 & 0x7) << 1),
            (pts >> 22) as u8,
            (((pts >> 15) as u8) << 1) | 1,
            (pts >> 7) as u8,
            ((pts as u8) << 1) | 1,
        ];
        p[4..18].copy_from_slice(&h);
        assert_eq!(pes_pts(&p), Some(pts));
    }
}
