//! MPEG-TS to live transports: the settings of a CBR multiplex for a live output, and the writer
//! that cuts the muxer's bytes into chunks of whole 188-byte packets (7 by default: one UDP
//! datagram, one SRT message) for a [`ChunkSink`].

use std::io::Write;
use std::sync::Arc;

use bytes::BytesMut;

use crate::av::io::ByteSink;
use crate::link::{ChunkSink, LinkCounters, TS_PACKET};

/// Packets per chunk: 1316 bytes, what fits a 1500-byte MTU with IP/UDP/RTP or SRT headers.
pub const PACKETS_PER_CHUNK: usize = 7;

/// A constant-rate multiplex: null packets fill up to `muxrate`, PCR and PAT/PMT repeated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TsMux {
    /// Bits per second of the whole multiplex.
    pub muxrate: u64,
    /// At most this long between PCRs (TR 101 290 asks ≤ 40 ms).
    pub pcr_ms: u32,
    /// At most this long between PAT/PMT repetitions (TR 101 290 asks ≤ 100 ms).
    pub psi_ms: u32,
}

impl TsMux {
    pub fn new(muxrate: u64) -> TsMux {
        TsMux {
            muxrate,
            pcr_ms: 20,
            psi_ms: 80,
        }
    }

    /// Options for libavformat's `mpegts` muxer.
    pub fn mux_options(&self) -> Vec<(String, String)> {
        vec![
            ("muxrate".into(), self.muxrate.to_string()),
            ("pcr_period".into(), self.pcr_ms.to_string()),
            (
                "pat_period".into(),
                format!("{:.3}", f64::from(self.psi_ms) / 1000.0),
            ),
            ("sdt_period".into(), "0.5".into()),
            // Small PES for audio, so that its packets do not wait for a large one to fill.
            ("pes_payload_size".into(), "1024".into()),
            // Each muxed packet goes out at once instead of waiting for the I/O buffer to fill.
            ("flush_packets".into(), "1".into()),
            // Muxing starts at once: no initial delay of the timestamps beyond what PCR needs.
            ("max_delay".into(), "200000".into()),
        ]
    }
}

/// Cuts a byte stream of TS packets into chunks of `packets` whole packets for a sink. Bytes
/// out of step with the 0x47 sync byte are skipped (counted as dropped packets) until it
/// returns; what is left at the end goes out as a last, shorter chunk.
pub struct TsChunker {
    sink: Arc<dyn ChunkSink>,
    /// Bytes as written, not yet cut into packets.
    raw: BytesMut,
    /// Whole packets waiting for their chunk to fill.
    ready: BytesMut,
    packets: usize,
    counters: Option<Arc<LinkCounters>>,
}

impl TsChunker {
    pub fn new(sink: Arc<dyn ChunkSink>, packets: usize) -> TsChunker {
        let packets = packets.max(1);
        TsChunker {
            sink,
            raw: BytesMut::with_capacity(TS_PACKET * packets * 4),
            ready: BytesMut::with_capacity(TS_PACKET * packets),
            packets,
            counters: None,
        }
    }

    /// Counts what is delivered (and skipped) on these counters.
    pub fn with_counters(mut self, c: Arc<LinkCounters>) -> TsChunker {
        self.counters = Some(c);
        self
    }

    /// Moves whole packets from `raw` to `ready`, delivering each full chunk.
    fn cut(&mut self) {
        loop {
            if !self.raw.is_empty() && self.raw[0] != 0x47 {
                let next = self.raw[1..]
                    .iter()
                    .position(|&b| b == 0x47)
                    .map_or(self.raw.len(), |p| p + 1);
                let _ = self.raw.split_to(next);
                if let Some(c) = &self.counters {
                    c.dropped(1);
                }
                continue;
            }
            if self.raw.len() < TS_PACKET {
                return;
            }
            self.ready.extend_from_slice(&self.raw.split_to(TS_PACKET));
            if self.ready.len() >= TS_PACKET * self.packets {
                self.deliver();
            }
        }
    }

    fn deliver(&mut self) {
        let chunk = self.ready.split().freeze();
        if let Some(c) = &self.counters {
            c.sent(chunk.len(), (chunk.len() / TS_PACKET) as u64);
        }
        self.sink.deliver(chunk);
    }
}

impl Write for TsChunker {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.raw.extend_from_slice(data);
        self.cut();
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for TsChunker {
    fn drop(&mut self) {
        self.cut();
        if !self.ready.is_empty() {
            self.deliver();
        }
    }
}

/// A muxer's byte sink that delivers whole-packet chunks to `sink`.
pub fn chunk_sink(name: impl Into<String>, sink: Arc<dyn ChunkSink>) -> ByteSink {
    ByteSink::new(name, TsChunker::new(sink, PACKETS_PER_CHUNK))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::Chunk;
    use std::sync::Mutex;

    fn packet(tag: u8) -> Vec<u8> {
        let mut p = vec![tag; TS_PACKET];
        p[0] = 0x47;
        p
    }

    #[test]
    fn chunks_hold_whole_packets() {
        let got: Arc<Mutex<Vec<Chunk>>> = Arc::default();
        let g = got.clone();
        let sink: Arc<dyn ChunkSink> = Arc::new(move |c: Chunk| g.lock().unwrap().push(c));
        let counters = Arc::new(LinkCounters::default());
        {
            let mut w = TsChunker::new(sink, 7).with_counters(counters.clone());
            let data: Vec<u8> = (0..16).flat_map(packet).collect();
            // Written in odd pieces, as an I/O buffer does.
            for piece in data.chunks(100) {
                w.write_all(piece).unwrap();
            }
            // Garbage between packets is skipped.
            w.write_all(&[1, 2, 3]).unwrap();
            w.write_all(&packet(99)).unwrap();
        }
        let got = got.lock().unwrap();
        let sizes: Vec<usize> = got.iter().map(|c| c.len() / TS_PACKET).collect();
        assert_eq!(sizes, vec![7, 7, 3]);
        assert!(got.iter().all(|c| c.len() % TS_PACKET == 0));
        assert!(got
            .iter()
            .all(|c| c.chunks(TS_PACKET).all(|p| p[0] == 0x47)));
        assert_eq!(got[2][2 * TS_PACKET + 1], 99);
        assert_eq!(counters.snapshot().packets_sent, 17);
        assert_eq!(counters.snapshot().packets_dropped, 1);
    }
}
