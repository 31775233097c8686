//! A storage that records every write and flush, and the crash states a power cut could leave.
//!
//! A process crash leaves every write the kernel was given; a power cut loses whatever was not
//! flushed, in any order and at sector granularity (a multi-sector write may land in part). The
//! write protocol promises that at every instant the file ESXi loads is complete. The power-cut
//! tests check that promise by recording a real write through [`Recorder`] and then rebuilding,
//! with [`Journal::crash_states`], the images a power cut could leave: everything up to a flush,
//! plus any subset of the sectors written after it (each sector as one of the versions written to
//! it, or untouched). Sector writes are taken as atomic, as the media guarantee (see
//! `format::fat::replace`); torn multi-sector writes are covered by the subsets.

use crate::io::disk::Storage;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::rc::Rc;

/// One thing the storage was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Write { offset: u64, data: Vec<u8> },
    Flush,
}

/// An in-memory image that serves reads and records writes and flushes.
pub struct Recorder {
    image: Vec<u8>,
    events: Rc<RefCell<Vec<Event>>>,
}

impl Recorder {
    /// A recorder over `image`; the events appear in the returned log as they happen.
    pub fn new(image: Vec<u8>) -> (Recorder, Rc<RefCell<Vec<Event>>>) {
        let events = Rc::new(RefCell::new(Vec::new()));
        (
            Recorder {
                image,
                events: Rc::clone(&events),
            },
            events,
        )
    }
}

impl Storage for Recorder {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = offset as usize;
        let src = self
            .image
            .get(start..start + buf.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "past the image"))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let start = offset as usize;
        self.image
            .get_mut(start..start + buf.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "past the image"))?
            .copy_from_slice(buf);
        self.events.borrow_mut().push(Event::Write {
            offset,
            data: buf.to_vec(),
        });
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.events.borrow_mut().push(Event::Flush);
        Ok(())
    }
}

/// The recorded run: the image before it, and what happened, cut into flush intervals.
pub struct Journal {
    base: Vec<u8>,
    /// The writes of each interval; interval `k` follows the `k`th flush (0: before the first).
    intervals: Vec<Vec<(u64, Vec<u8>)>>,
    sector: u64,
}

/// One image a power cut could leave.
pub struct CrashState {
    /// Flush interval the cut fell in.
    pub interval: usize,
    /// Sectors written in that interval, and how many of them landed.
    pub sectors: usize,
    pub landed: usize,
    pub image: Vec<u8>,
}

/// What [`Journal::crash_states`] tried for one interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    pub interval: usize,
    /// Distinct sectors written in the interval.
    pub sectors: usize,
    /// Every combination (`None` when there are too many to try).
    pub possible: Option<u64>,
    pub tried: u64,
}

impl Journal {
    /// The journal of a run that started from `base` and made `events`, for a disk whose
    /// writes are atomic per `sector` bytes.
    pub fn new(base: Vec<u8>, events: &[Event], sector: u64) -> Journal {
        let mut intervals = vec![Vec::new()];
        for e in events {
            match e {
                Event::Write { offset, data } => intervals
                    .last_mut()
                    .expect("one interval at least")
                    .push((*offset, data.clone())),
                Event::Flush => intervals.push(Vec::new()),
            }
        }
        Journal {
            base,
            intervals,
            sector,
        }
    }

    /// Flush intervals that hold writes.
    pub fn intervals(&self) -> usize {
        self.intervals.len()
    }

    /// Number of flushes recorded.
    pub fn flushes(&self) -> usize {
        self.intervals.len() - 1
    }

    /// The image once every write of intervals before `k` has landed (a cut just after flush
    /// `k`).
    fn durable(&self, k: usize) -> Vec<u8> {
        let mut img = self.base.clone();
        for (offset, data) in self.intervals[..k].iter().flatten() {
            img[*offset as usize..*offset as usize + data.len()].copy_from_slice(data);
        }
        img
    }

    /// For each sector written in interval `k`, the versions written to it, in order.
    fn versions(&self, k: usize) -> BTreeMap<u64, Vec<Vec<u8>>> {
        let s = self.sector as usize;
        let mut out: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
        for (offset, data) in &self.intervals[k] {
            // Writes here are sector-aligned: a write that is not is split at sector bounds
            // and its partial sectors merged with what the image holds at that point.
            let first = offset / self.sector;
            let last = (offset + data.len() as u64).div_ceil(self.sector);
            for sec in first..last {
                let lo = (sec * self.sector).max(*offset);
                let hi = ((sec + 1) * self.sector).min(offset + data.len() as u64);
                let entry = out.entry(sec).or_default();
                let mut v = entry.last().cloned().unwrap_or_else(|| {
                    self.durable(k)[(sec as usize) * s..(sec as usize + 1) * s].to_vec()
                });
                v[(lo - sec * self.sector) as usize..(hi - sec * self.sector) as usize]
                    .copy_from_slice(&data[(lo - offset) as usize..(hi - offset) as usize]);
                entry.push(v);
            }
        }
        out
    }

    /// The crash states of interval `k`: every combination when there are at most `limit`,
    /// else `limit` of them (the two extremes, each sector alone missing and alone landed, then
    /// random ones from `seed`). Returns the coverage too.
    pub fn crash_states(&self, k: usize, limit: u64, seed: u64) -> (Vec<CrashState>, Coverage) {
        let base = self.durable(k);
        let versions: Vec<(u64, Vec<Vec<u8>>)> = self.versions(k).into_iter().collect();
        let choices: Vec<u64> = versions.iter().map(|(_, v)| v.len() as u64 + 1).collect();
        let possible = choices
            .iter()
            .try_fold(1u64, |acc, &c| acc.checked_mul(c))
            .filter(|&p| p <= limit);
        let pick = |choice: &[u64]| -> CrashState {
            let mut img = base.clone();
            let mut landed = 0;
            for ((sec, vs), &c) in versions.iter().zip(choice) {
                if c > 0 {
                    let at = (*sec * self.sector) as usize;
                    img[at..at + self.sector as usize].copy_from_slice(&vs[c as usize - 1]);
                    landed += 1;
                }
            }
            CrashState {
                interval: k,
                sectors: versions.len(),
                landed,
                image: img,
            }
        };
        let mut states = Vec::new();
        match possible {
            Some(p) => {
                for mut i in 0..p {
                    let choice: Vec<u64> = choices
                        .iter()
                        .map(|&c| {
                            let d = i % c;
                            i /= c;
                            d
                        })
                        .collect();
                    states.push(pick(&choice));
                }
            }
            None => {
                let n = versions.len();
                let last: Vec<u64> = choices.iter().map(|c| c - 1).collect();
                let mut chosen: Vec<Vec<u64>> = vec![vec![0; n], last.clone()];
                for i in 0..n {
                    let mut missing = last.clone();
                    missing[i] = 0;
                    chosen.push(missing);
                    let mut alone = vec![0; n];
                    alone[i] = last[i];
                    chosen.push(alone);
                }
                let mut rng = seed | 1;
                while (chosen.len() as u64) < limit {
                    chosen.push(
                        choices
                            .iter()
                            .map(|&c| {
                                // xorshift64: a fixed, reproducible sequence.
                                rng ^= rng << 13;
                                rng ^= rng >> 7;
                                rng ^= rng << 17;
                                rng % c
                            })
                            .collect(),
                    );
                }
                chosen.truncate(limit as usize);
                states.extend(chosen.iter().map(|c| pick(c)));
            }
        }
        let tried = states.len() as u64;
        (
            states,
            Coverage {
                interval: k,
                sectors: versions.len(),
                possible,
                tried,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal() -> Journal {
        let events = vec![
            Event::Write {
                offset: 0,
                data: vec![1; 8],
            },
            Event::Flush,
            Event::Write {
                offset: 4,
                data: vec![2; 8],
            },
            Event::Write {
                offset: 4,
                data: vec![3; 4],
            },
        ];
        Journal::new(vec![0; 16], &events, 4)
    }

    #[test]
    fn a_cut_keeps_what_was_flushed_and_any_subset_after_it() {
        let j = journal();
        assert_eq!((j.intervals(), j.flushes()), (2, 1));
        let (states, cov) = j.crash_states(1, 100, 7);
        // Sector 1 (bytes 4..8) was written twice, sector 2 once: 3 * 2 combinations.
        assert_eq!(cov.possible, Some(6));
        assert_eq!(states.len(), 6);
        let images: Vec<&[u8]> = states.iter().map(|s| s.image.as_slice()).collect();
        assert!(images.contains(&&[1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0][..]));
        assert!(images.contains(&&[1, 1, 1, 1, 3, 3, 3, 3, 2, 2, 2, 2, 0, 0, 0, 0][..]));
        // The older version of sector 1 persisting alone (a reordering) is a state too.
        assert!(images.contains(&&[1, 1, 1, 1, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0][..]));
        // Every state holds the flushed interval 0.
        assert!(states.iter().all(|s| s.image[..4] == [1; 4]));
    }

    #[test]
    fn too_many_combinations_are_sampled_reproducibly() {
        let j = journal();
        let (a, cov) = j.crash_states(1, 4, 7);
        let (b, _) = j.crash_states(1, 4, 7);
        assert_eq!(cov.possible, None);
        assert_eq!(a.len(), 4);
        assert!(a.iter().zip(&b).all(|(x, y)| x.image == y.image));
    }
}
