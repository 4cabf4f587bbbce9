//! A bit-exact reimplementation of the parts of CPython's `random` module (and of the
//! built-in `sum()` over floats) that hanzo-consensus 0.1.0 relies on.
//!
//! The Python code being reproduced is, once per sampling round on a module-level
//! generator seeded once with `random.seed(N)`:
//!
//! ```python
//! weights = [state.luminance[p] for p in self.participants]
//! total = sum(weights)
//! sampled = random.choices(self.participants, [w / total for w in weights], k=state.k)
//! ```
//!
//! [`PyRandom::new`] + [`PyRandom::choices`] reproduce the draws, and [`normalized_weights`]
//! reproduces the weight list. The Mersenne Twister stream, `random()` and `choices()` are
//! the same in CPython 3.11, 3.12 and 3.14 (checked against all three); `sum()` over floats
//! changed in 3.12, see [`PySum`].

use std::fmt;

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// CPython's Mersenne Twister (MT19937) with `random.seed(int)` seeding.
#[derive(Clone)]
pub struct PyRandom {
    mt: [u32; N],
    /// Next word of `mt` to temper; `N` means the block must be regenerated first.
    index: usize,
}

impl fmt::Debug for PyRandom {
    // The 624-word state is noise in a debug dump; the position is what helps.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PyRandom")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl PyRandom {
    /// Equivalent to `random.seed(seed)` for a non-negative Python int: init_by_array over the
    /// 32-bit words of the value, least significant first (0 → key `[0]`).
    pub fn new(seed: u64) -> Self {
        let lo = seed as u32;
        let hi = (seed >> 32) as u32;
        // CPython drops high zero words but always keeps at least one word.
        if hi == 0 {
            Self::from_key(&[lo])
        } else {
            Self::from_key(&[lo, hi])
        }
    }

    /// `init_by_array` from CPython's `_randommodule.c` (the reference MT19937 2002 seeding).
    fn from_key(key: &[u32]) -> Self {
        let mut r = Self::from_u32(19_650_218);
        let mt = &mut r.mt;
        let mut i = 1usize;
        let mut j = 0usize;
        for _ in 0..N.max(key.len()) {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30);
            mt[i] = (mt[i] ^ prev.wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = mt[i - 1] ^ (mt[i - 1] >> 30);
            mt[i] = (mt[i] ^ prev.wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
        }
        // Guarantees a non-zero initial state whatever the key.
        mt[0] = 0x8000_0000;
        r
    }

    /// `init_genrand`: the linear-congruential fill that `init_by_array` starts from.
    fn from_u32(s: u32) -> Self {
        let mut mt = [0u32; N];
        mt[0] = s;
        for i in 1..N {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        PyRandom { mt, index: N }
    }

    /// Regenerates the whole block of `N` words (the twist step of `genrand_uint32`).
    fn twist(&mut self) {
        let mt = &mut self.mt;
        let mag01 = |y: u32| if y & 1 == 0 { 0 } else { MATRIX_A };
        for kk in 0..N - M {
            let y = (mt[kk] & UPPER_MASK) | (mt[kk + 1] & LOWER_MASK);
            mt[kk] = mt[kk + M] ^ (y >> 1) ^ mag01(y);
        }
        for kk in N - M..N - 1 {
            let y = (mt[kk] & UPPER_MASK) | (mt[kk + 1] & LOWER_MASK);
            mt[kk] = mt[kk + M - N] ^ (y >> 1) ^ mag01(y);
        }
        let y = (mt[N - 1] & UPPER_MASK) | (mt[0] & LOWER_MASK);
        mt[N - 1] = mt[M - 1] ^ (y >> 1) ^ mag01(y);
        self.index = 0;
    }

    /// `genrand_uint32`; equal to Python's `getrandbits(32)`.
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// `random.random()`: 53 random bits from two words, in [0, 1).
    pub fn random(&mut self) -> f64 {
        let a = self.next_u32() >> 5;
        let b = self.next_u32() >> 6;
        (f64::from(a) * 67_108_864.0 + f64::from(b)) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `random.choices(range(len(weights)), weights, k=k)` returning indices: cum_weights via
    /// itertools.accumulate (plain left-to-right float addition), total = cum[-1], each draw
    /// `bisect_right(cum, random()*total, 0, n-1)`. k = 0 draws nothing and consumes nothing.
    ///
    /// Every draw consumes one `random()` (two words), even when `weights.len() == 1`.
    ///
    /// # Panics
    /// Where Python raises, for `k > 0`: empty `weights` (IndexError), or a total that is not
    /// positive and finite (ValueError). With `k == 0` this returns an empty list without
    /// checking the weights, where Python would still raise for invalid ones.
    pub fn choices(&mut self, weights: &[f64], k: usize) -> Vec<usize> {
        if k == 0 {
            return Vec::new();
        }
        // itertools.accumulate: the first element as is, then running sums.
        let mut cum = Vec::with_capacity(weights.len());
        let mut acc = 0.0f64;
        for (i, &w) in weights.iter().enumerate() {
            acc = if i == 0 { w } else { acc + w };
            cum.push(acc);
        }
        let Some(&last) = cum.last() else {
            panic!("choices: empty population (Python raises IndexError)");
        };
        // `cum_weights[-1] + 0.0` in Python; the only effect is turning -0.0 into 0.0.
        let total = last + 0.0;
        assert!(
            total > 0.0,
            "choices: total of weights must be greater than zero, got {total}"
        );
        assert!(
            total.is_finite(),
            "choices: total of weights must be finite, got {total}"
        );
        let hi = cum.len() - 1;
        (0..k)
            .map(|_| bisect_right(&cum, self.random() * total, 0, hi))
            .collect()
    }
}

/// `bisect.bisect_right(a, x, lo, hi)`: the first index in `lo..hi` whose element is
/// greater than `x` (or `hi`), comparing with `x < a[mid]` exactly as CPython does.
fn bisect_right(a: &[f64], x: f64, mut lo: usize, mut hi: usize) -> usize {
    while lo < hi {
        let mid = (lo + hi) / 2;
        if x < a[mid] {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// Which CPython `sum()` over floats to reproduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PySum {
    /// CPython 3.12 and later: Neumaier compensated summation (`builtin_sum_impl`).
    Compensated,
    /// CPython 3.11 and earlier: plain left-to-right addition.
    Plain,
}

/// The `sum()` that the recorded reference runs of hanzo-consensus 0.1.0
/// (`tests/fixtures/hanzo-0.1.0-scenarios.json`) were made with: their weights match plain
/// summation bit for bit, while compensated summation moves some of them by a few ulps, so
/// they were recorded on CPython 3.11 or earlier.
pub const REFERENCE_SUM: PySum = PySum::Plain;

/// Python's built-in `sum()` over floats, exactly as CPython 3.12 and later sum them
/// (Neumaier compensated summation; 3.11 and earlier add plainly, see [`py_sum_with`]).
///
/// An empty slice gives 0.0 (Python returns the int 0, which compares equal).
pub fn py_sum(values: &[f64]) -> f64 {
    py_sum_with(values, PySum::Compensated)
}

/// Python's built-in `sum()` over floats as the given CPython generation computes it.
pub fn py_sum_with(values: &[f64], flavor: PySum) -> f64 {
    // Python starts from the int 0; `0 + x` for the first float is the same as `0.0 + x`,
    // including turning -0.0 into 0.0.
    let mut f = 0.0f64;
    match flavor {
        PySum::Plain => {
            for &x in values {
                f += x;
            }
            f
        }
        PySum::Compensated => {
            let mut c = 0.0f64;
            for &x in values {
                let t = f + x;
                if f.abs() >= x.abs() {
                    c += (f - t) + x;
                } else {
                    c += (x - t) + f;
                }
                f = t;
            }
            // CPython skips a zero compensation (keeps the sign of a -0.0 result) and a
            // non-finite one (so an overflowed or infinite sum does not become NaN).
            if c != 0.0 && c.is_finite() {
                f += c;
            }
            f
        }
    }
}

/// `[w / sum(lums) for w in lums]` with CPython 3.12+ `sum()` ([`py_sum`]).
///
/// The recorded reference runs were made with the older plain `sum()`; use
/// [`normalized_weights_with`] and [`REFERENCE_SUM`] to reproduce those bit for bit.
pub fn normalized_weights(lums: &[f64]) -> Vec<f64> {
    normalized_weights_with(lums, PySum::Compensated)
}

/// `[w / sum(lums) for w in lums]` with the given CPython generation's `sum()`.
pub fn normalized_weights_with(lums: &[f64], flavor: PySum) -> Vec<f64> {
    let total = py_sum_with(lums, flavor);
    lums.iter().map(|&w| w / total).collect()
}

#[cfg(test)]
mod tests;
