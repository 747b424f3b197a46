//! A channel's filler: what airs in a gap, after an item shorter than its slot, in place of an
//! unplayable file, and as the emergency slate. Generated (colour bars, the channel's ident, a
//! frame counter, 1 kHz tone) or catalog files played in a loop; a filler file that cannot be
//! played gives way to the generated slate, so that filler itself never fails.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::av::clip::{Clip, ClipSpec, Take};
use crate::av::ff;
use crate::av::live::{GeneratedSlate, House};

/// What fills.
#[derive(Debug, Clone, PartialEq)]
pub enum Filler {
    /// Colour bars with this ident and a frame counter, 1 kHz tone at −20 dBFS.
    Generated { ident: String },
    /// Files played one after the other, in a loop (a catalog asset or a playlist of them).
    Files(Vec<PathBuf>),
}

/// Makes filler pictures and samples, one house frame at a time.
pub struct FillerSource {
    house: House,
    interlaced: bool,
    ident: String,
    files: Vec<PathBuf>,
    next_file: usize,
    clip: Option<Clip>,
    /// Files that ended before giving a picture, in a row: all of them broken → the slate.
    barren: usize,
    slate: Option<GeneratedSlate>,
    last: Option<ff::frame::Video>,
}

impl FillerSource {
    pub fn new(house: House, interlaced: bool, filler: &Filler, channel: &str) -> FillerSource {
        let (ident, files) = match filler {
            Filler::Generated { ident } => (ident.clone(), Vec::new()),
            Filler::Files(f) => (channel.to_string(), f.clone()),
        };
        FillerSource {
            house,
            interlaced,
            ident,
            files,
            next_file: 0,
            clip: None,
            barren: 0,
            slate: None,
            last: None,
        }
    }

    fn slate_frame(&mut self, n: usize, planes: &mut [Vec<f32>]) -> Option<ff::frame::Video> {
        if self.slate.is_none() {
            match GeneratedSlate::new(&self.house, &self.ident) {
                Ok(s) => self.slate = Some(s),
                Err(e) => {
                    tracing::error!(error = %e, "playout: the generated slate cannot be made");
                    return None;
                }
            }
        }
        self.slate.as_mut()?.next(n, planes)
    }

    /// Builds the generated slate now, so that its first frame costs no more than the others.
    pub fn warm(&mut self) {
        if self.slate.is_none() {
            self.slate = GeneratedSlate::new(&self.house, &self.ident).ok();
        }
    }

    /// The next filler frame (`None` only when not even the generated slate can be made).
    pub fn next(&mut self, n: usize, planes: &mut [Vec<f32>]) -> Option<ff::frame::Video> {
        if self.files.is_empty() || self.barren >= self.files.len() {
            let f = self.slate_frame(n, planes);
            if f.is_some() {
                return f;
            }
            return self
                .last
                .as_ref()
                .and_then(|l| crate::av::share(l).map(Into::into));
        }
        for _ in 0..=self.files.len() {
            if self.clip.is_none() {
                let path = self.files[self.next_file % self.files.len()].clone();
                self.next_file += 1;
                self.clip = Some(Clip::open(ClipSpec {
                    path,
                    house: self.house,
                    interlaced: self.interlaced,
                    in_frame: 0,
                    gain_db: 0.0,
                }));
            }
            let clip = self.clip.as_mut().expect("opened above");
            let first = clip.position() == 0;
            match clip.take(n, planes, Instant::now() + Duration::from_secs(2)) {
                Take::Frame(f) => {
                    self.barren = 0;
                    self.last = crate::av::share(&f).map(Into::into);
                    return Some(f);
                }
                Take::Late => {
                    return self
                        .last
                        .as_ref()
                        .and_then(|l| crate::av::share(l).map(Into::into))
                        .or_else(|| self.slate_frame(n, planes));
                }
                Take::Ended(e) => {
                    if let Some(e) = e {
                        tracing::warn!(error = %e, "playout: filler file unplayable");
                    }
                    if first {
                        self.barren += 1;
                    }
                    self.clip = None;
                    if self.barren >= self.files.len() {
                        return self.slate_frame(n, planes);
                    }
                }
            }
        }
        self.slate_frame(n, planes)
    }
}
