//! Seeded draws: the stream every strategy draws from, and weighted samples of peers.
//! The draws are a documented function of (seed, round, seat name), so they never depend
//! on the order of the panel and never change with a dependency.

/// SplitMix64: a tiny, well-mixed, seedable stream. The engine's draws are a documented
/// function of (seed, round, seat name), so they must never change with a dependency.
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub(crate) fn for_draw(seed: u64, round: usize, name: &str) -> SplitMix {
        let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
        for b in name.bytes().chain((round as u64).to_le_bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut s = SplitMix(h);
        s.next_u64();
        s
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    pub(crate) fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * n as f64) as usize
    }
}

/// The live seats of a round with their luminance, for weighted draws of peers.
pub(crate) struct Sampler {
    seats: Vec<usize>,
    /// Running sums of the weights: `prefix[i]` = weight of `seats[..=i]`.
    prefix: Vec<f64>,
}

impl Sampler {
    pub(crate) fn new(weighted: impl Iterator<Item = (usize, f64)>) -> Sampler {
        let mut seats = Vec::new();
        let mut prefix = Vec::new();
        let mut total = 0.0;
        for (seat, w) in weighted {
            total += w.max(f64::MIN_POSITIVE);
            seats.push(seat);
            prefix.push(total);
        }
        Sampler { seats, prefix }
    }

    fn weight(&self, i: usize) -> f64 {
        self.prefix[i] - if i == 0 { 0.0 } else { self.prefix[i - 1] }
    }

    /// `m` seats other than `asker`, without replacement, each pick proportional to its
    /// weight among those not yet picked; returned in a shuffled order.
    pub(crate) fn draw(&self, rng: &mut SplitMix, asker: usize, m: usize) -> Vec<usize> {
        let others = self.seats.len() - usize::from(self.seats.contains(&asker));
        let m = m.min(others);
        let mut picked: Vec<usize> = Vec::with_capacity(m);
        if m == others {
            picked.extend(self.seats.iter().copied().filter(|&s| s != asker));
        } else {
            let total = *self.prefix.last().unwrap_or(&0.0);
            while picked.len() < m {
                // Rejection keeps each draw O(log n); a run of rejections (one seat holds
                // nearly all the weight) falls back to an exact draw over the rest.
                let mut chosen = None;
                for _ in 0..32 {
                    let x = rng.unit() * total;
                    let i = self
                        .prefix
                        .partition_point(|&p| p < x)
                        .min(self.seats.len() - 1);
                    let seat = self.seats[i];
                    if seat != asker && !picked.contains(&seat) {
                        chosen = Some(seat);
                        break;
                    }
                }
                let seat = chosen.unwrap_or_else(|| {
                    let rest: Vec<usize> = (0..self.seats.len())
                        .filter(|&i| self.seats[i] != asker && !picked.contains(&self.seats[i]))
                        .collect();
                    let sum: f64 = rest.iter().map(|&i| self.weight(i)).sum();
                    let mut x = rng.unit() * sum;
                    for &i in &rest {
                        x -= self.weight(i);
                        if x <= 0.0 {
                            return self.seats[i];
                        }
                    }
                    self.seats[*rest.last().expect("fewer picks than candidates")]
                });
                picked.push(seat);
            }
        }
        for i in (1..picked.len()).rev() {
            let j = rng.below(i + 1);
            picked.swap(i, j);
        }
        picked
    }
}

/// `m` of `candidates` without replacement, each pick proportional to its weight among
/// those not yet picked, in a shuffled order.
pub(crate) fn weighted_sample(
    rng: &mut SplitMix,
    candidates: &[(usize, f64)],
    m: usize,
) -> Vec<usize> {
    Sampler::new(candidates.iter().copied()).draw(rng, usize::MAX, m)
}
