//! SMPTE 12M timecode: parse, print, count frames, drop-frame aware. Pure: no libav, no clock.
//! Imports only `config`'s value types (`Rate`); nothing of the domain, no libav, tokio or SQL.

use std::fmt;

use crate::config::Rate;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timecode {
    /// Frames since 00:00:00:00 at the nominal base rate.
    pub frames: u64,
    pub base: u32,
    pub drop_frame: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("timecode {0:?} is not HH:MM:SS:FF (or HH:MM:SS;FF for drop-frame) valid at this rate")]
pub struct TimecodeError(pub String);

impl Timecode {
    pub fn parse(s: &str, rate: Rate) -> Result<Timecode, TimecodeError> {
        let err = || TimecodeError(s.to_string());
        let t = s.trim();
        let drop_frame = t.contains(';') || t.contains('.');
        let parts: Vec<&str> = t.split([':', ';', '.']).collect();
        if parts.len() != 4 {
            return Err(err());
        }
        let mut v = [0u64; 4];
        for (slot, p) in v.iter_mut().zip(&parts) {
            if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            *slot = p.parse().map_err(|_| err())?;
        }
        let base = rate.timecode_base();
        let [h, m, sec, f] = v;
        if h > 23 || m > 59 || sec > 59 || f >= u64::from(base) {
            return Err(err());
        }
        let drop_frame = drop_frame && rate.is_ntsc_drop();
        let b = u64::from(base);
        let mut frames = ((h * 60 + m) * 60 + sec) * b + f;
        if drop_frame {
            let d = u64::from(base / 15); // 2 at 29.97, 4 at 59.94
            if sec == 0 && m % 10 != 0 && f < d {
                return Err(err());
            }
            let total_minutes = h * 60 + m;
            frames -= d * (total_minutes - total_minutes / 10);
        }
        Ok(Timecode {
            frames,
            base,
            drop_frame,
        })
    }

    pub fn add_frames(self, n: u64) -> Timecode {
        let day = self.frames_per_day();
        Timecode {
            frames: (self.frames + n) % day,
            ..self
        }
    }

    fn frames_per_day(&self) -> u64 {
        let b = u64::from(self.base);
        if self.drop_frame {
            let d = u64::from(self.base / 15);
            24 * (60 * 60 * b - d * 54)
        } else {
            24 * 60 * 60 * b
        }
    }
}

impl fmt::Display for Timecode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = u64::from(self.base);
        let mut n = self.frames;
        if self.drop_frame {
            let d = u64::from(self.base / 15);
            let per_10min = 600 * b - 9 * d;
            let per_min = 60 * b - d;
            let tens = n / per_10min;
            let rem = n % per_10min;
            n += 9 * d * tens;
            if rem > d {
                n += d * ((rem - d) / per_min);
            }
        }
        let ff = n % b;
        let s = (n / b) % 60;
        let m = (n / b / 60) % 60;
        let h = n / b / 3600;
        let sep = if self.drop_frame { ';' } else { ':' };
        write!(f, "{h:02}:{m:02}:{s:02}{sep}{ff:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let r25 = Rate::new(25, 1);
        let tc = Timecode::parse("10:00:00:00", r25).unwrap();
        assert_eq!(tc.frames, 900_000);
        assert_eq!(tc.to_string(), "10:00:00:00");
        assert_eq!(tc.add_frames(26).to_string(), "10:00:01:01");
        let ntsc = Rate::new(30000, 1001);
        let df = Timecode::parse("00:01:00;02", ntsc).unwrap();
        assert_eq!(df.frames, 1800);
        assert_eq!(df.to_string(), "00:01:00;02");
        assert!(Timecode::parse("00:01:00;00", ntsc).is_err());
        assert_eq!(
            Timecode::parse("00:09:59;29", ntsc)
                .unwrap()
                .add_frames(1)
                .to_string(),
            "00:10:00;00"
        );
        for bad in [
            "",
            "10:00:00",
            "25:00:00:00",
            "10:00:00:25",
            "a:b:c:d",
            "100:00:00:00",
        ] {
            assert!(Timecode::parse(bad, r25).is_err(), "{bad}");
        }
    }

    #[test]
    fn drop_frame_is_consistent() {
        let ntsc = Rate::new(30000, 1001);
        let start = Timecode::parse("00:00:00;00", ntsc).unwrap();
        for n in (0..200_000).step_by(7) {
            let tc = start.add_frames(n);
            let back = Timecode::parse(&tc.to_string(), ntsc).unwrap();
            assert_eq!(back.frames, tc.frames, "{tc}");
        }
    }
}
