use std::fmt;
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValueError {
    #[error(
        "bit rate {0:?} is not a number with an optional k/M/G suffix (e.g. \"50M\", \"192k\")"
    )]
    Bitrate(String),
    #[error("rate {0:?} is not a positive rational (e.g. \"25/1\", \"30000/1001\", \"29.97\")")]
    Rate(String),
    #[error(
        "{0:?} is not an address or CIDR block (e.g. \"10.0.0.0/8\", \"::1\", \"192.0.2.7/32\")"
    )]
    Cidr(String),
}

/// An IPv4 or IPv6 network, written `"10.0.0.0/8"`, `"fd00::/8"` or a single address. An
/// IPv4-mapped IPv6 address (`::ffff:10.1.2.3`) matches as its IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ValueError::Cidr(s.to_string());
        let t = s.trim();
        let (a, p) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let addr: std::net::IpAddr = a.parse().map_err(|_| err())?;
        let addr = match addr {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, std::net::IpAddr::V4),
            v4 => v4,
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) if !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| err())?
            }
            Some(_) => return Err(err()),
            None => max,
        };
        if prefix > max {
            return Err(err());
        }
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Bits per second. Written as `"50M"`, `"192k"`, `"36408333"` or a bare integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bitrate(pub u64);

impl Bitrate {
    pub fn bps(self) -> u64 {
        self.0
    }
}

impl FromStr for Bitrate {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let err = || ValueError::Bitrate(s.to_string());
        let (num, mult) = match t.char_indices().last() {
            Some((i, 'k' | 'K')) => (&t[..i], 1_000.0),
            Some((i, 'M' | 'm')) => (&t[..i], 1_000_000.0),
            Some((i, 'G' | 'g')) => (&t[..i], 1_000_000_000.0),
            Some(_) => (t, 1.0),
            None => return Err(err()),
        };
        let v: f64 = num.trim().parse().map_err(|_| err())?;
        if !v.is_finite() || v <= 0.0 || v * mult > 1e12 {
            return Err(err());
        }
        Ok(Bitrate((v * mult).round() as u64))
    }
}

impl fmt::Display for Bitrate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b >= 1_000_000 && b.is_multiple_of(1_000_000) {
            write!(f, "{}M", b / 1_000_000)
        } else if b >= 1_000 && b.is_multiple_of(1_000) {
            write!(f, "{}k", b / 1_000)
        } else {
            write!(f, "{b}")
        }
    }
}

impl<'de> Deserialize<'de> for Bitrate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(0) => Err(de::Error::custom(ValueError::Bitrate("0".into()))),
            Raw::Int(n) => Ok(Bitrate(n)),
            Raw::Str(s) => s.parse().map_err(de::Error::custom),
        }
    }
}

impl Serialize for Bitrate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// A positive rational rate (frames per second, fields per second), kept exact:
/// `30000/1001` is not `29.97`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub num: u32,
    pub den: u32,
}

impl Rate {
    pub const fn new(num: u32, den: u32) -> Rate {
        Rate { num, den }
    }

    /// Reduced form; `None` when either part is zero.
    pub fn reduced(num: i64, den: i64) -> Option<Rate> {
        if num <= 0 || den <= 0 {
            return None;
        }
        let g = gcd(num, den);
        let (n, d) = (num / g, den / g);
        Some(Rate {
            num: u32::try_from(n).ok()?,
            den: u32::try_from(d).ok()?,
        })
    }

    pub fn as_f64(self) -> f64 {
        f64::from(self.num) / f64::from(self.den)
    }

    pub fn double(self) -> Rate {
        Rate::reduced(i64::from(self.num) * 2, i64::from(self.den)).unwrap_or(self)
    }

    /// Frames in `seconds`, rounded to the nearest frame.
    pub fn frames_in(self, seconds: f64) -> u64 {
        (seconds * self.as_f64()).round().max(0.0) as u64
    }

    /// The nominal integer frame count per second used by timecode (25, 30 for 30000/1001).
    pub fn timecode_base(self) -> u32 {
        (self.as_f64().round() as u32).max(1)
    }

    /// 29.97 and 59.94: the rates that count timecode in drop-frame.
    pub fn is_ntsc_drop(self) -> bool {
        self.den == 1001 && (self.num == 30000 || self.num == 60000)
    }
}

pub(crate) fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs().max(1)
}

impl FromStr for Rate {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let err = || ValueError::Rate(s.to_string());
        if let Some((n, d)) = t.split_once(['/', ':']) {
            let n: i64 = n.trim().parse().map_err(|_| err())?;
            let d: i64 = d.trim().parse().map_err(|_| err())?;
            return Rate::reduced(n, d).ok_or_else(err);
        }
        // Decimal shorthands broadcast people write: 23.976, 29.97, 59.94 are the 1001 rates.
        let v: f64 = t.parse().map_err(|_| err())?;
        if !v.is_finite() || v <= 0.0 || v > 1000.0 {
            return Err(err());
        }
        for base in [24u32, 30, 48, 60, 120] {
            let ntsc = f64::from(base) * 1000.0 / 1001.0;
            if (v - ntsc).abs() < 0.01 {
                return Ok(Rate::new(base * 1000, 1001));
            }
        }
        if (v - v.round()).abs() < 1e-9 {
            return Ok(Rate::new(v.round() as u32, 1));
        }
        Rate::reduced((v * 1000.0).round() as i64, 1000).ok_or_else(err)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.num, self.den)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrates() {
        assert_eq!("50M".parse::<Bitrate>().unwrap().bps(), 50_000_000);
        assert_eq!("192k".parse::<Bitrate>().unwrap().bps(), 192_000);
        assert_eq!("1.5M".parse::<Bitrate>().unwrap().bps(), 1_500_000);
        assert_eq!("36408333".parse::<Bitrate>().unwrap().bps(), 36_408_333);
        for bad in ["", "M", "-5M", "abc", "0", "1e20"] {
            assert!(bad.parse::<Bitrate>().is_err(), "{bad}");
        }
        assert_eq!(Bitrate(50_000_000).to_string(), "50M");
    }

    #[test]
    fn rates() {
        assert_eq!("25/1".parse::<Rate>().unwrap(), Rate::new(25, 1));
        assert_eq!("50/2".parse::<Rate>().unwrap(), Rate::new(25, 1));
        assert_eq!("29.97".parse::<Rate>().unwrap(), Rate::new(30000, 1001));
        assert_eq!("23.976".parse::<Rate>().unwrap(), Rate::new(24000, 1001));
        assert_eq!("25".parse::<Rate>().unwrap(), Rate::new(25, 1));
        assert_eq!("12.5".parse::<Rate>().unwrap(), Rate::new(25, 2));
        for bad in ["0/1", "1/0", "x", "-25", ""] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
        assert!(Rate::new(30000, 1001).is_ntsc_drop());
        assert_eq!(Rate::new(30000, 1001).timecode_base(), 30);
    }

    #[test]
    fn cidrs() {
        let c = |s: &str| s.parse::<Cidr>().unwrap();
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert!(c("10.0.0.0/8").contains(ip("10.200.1.2")));
        assert!(!c("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(c("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!c("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(c("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(c("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert!(c("fd00::/8").contains(ip("fd12::1")));
        assert!(!c("fd00::/8").contains(ip("fe80::1")));
        assert!(!c("::/0").contains(ip("10.0.0.1")), "families do not mix");
        assert_eq!(c("192.0.2.0/24").to_string(), "192.0.2.0/24");
        for bad in [
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0/8",
            "host",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
