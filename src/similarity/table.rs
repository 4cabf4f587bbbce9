//! Many token sets compared pair by pair: the sets side by side in one block of memory,
//! so that a panel's all-pairs pass costs a few instructions per pair instead of a call,
//! a feature check and two pointer chases each. With AVX-512 VPOPCNTDQ one instruction
//! counts the common ids of a chunk of eight words. The threshold becomes, per total
//! size, the least common count that reaches it, so each test is an integer comparison;
//! a pair of long sets is dropped as soon as even its best case falls short of it.

use super::{TokenSet, popcount_and_portable};

/// Words per chunk: one 512-bit register.
const CHUNK: usize = 8;
/// Chunks counted between two checks of a pair's bound.
const STRETCH: usize = 4;

/// Token sets of one vocabulary as the rows of a table.
pub struct SetTable {
    /// Chunks per row.
    chunks: usize,
    bits: Vec<u64>,
    lens: Vec<u32>,
    /// `rest[row * chunks + c]`: the row's ids after chunk `c` (for rows of several
    /// stretches).
    rest: Vec<u32>,
}

impl SetTable {
    pub fn new(sets: &[&TokenSet]) -> SetTable {
        let words = sets.iter().map(|s| s.bits.len()).max().unwrap_or(0);
        let chunks = words.div_ceil(CHUNK).max(1);
        let width = chunks * CHUNK;
        let mut bits = vec![0u64; width * sets.len()];
        for (r, set) in sets.iter().enumerate() {
            bits[r * width..][..set.bits.len()].copy_from_slice(&set.bits);
        }
        // Only rows of several stretches check a bound part way.
        let mut rest = Vec::new();
        if chunks > STRETCH {
            rest.resize(chunks * sets.len(), 0);
            for (r, (set, row)) in sets.iter().zip(bits.chunks_exact(width)).enumerate() {
                let mut left = set.len as u32;
                for (c, chunk) in row.chunks_exact(CHUNK).enumerate() {
                    left -= chunk.iter().map(|w| w.count_ones()).sum::<u32>();
                    rest[r * chunks + c] = left;
                }
            }
        }
        SetTable {
            chunks,
            bits,
            lens: sets.iter().map(|s| s.len as u32).collect(),
            rest,
        }
    }

    pub fn len(&self) -> usize {
        self.lens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    fn row(&self, r: usize) -> &[u64] {
        let width = self.chunks * CHUNK;
        &self.bits[r * width..(r + 1) * width]
    }

    /// Calls `each(i, j)`, `i < j` in increasing order, for every pair of rows whose
    /// Jaccard similarity is at least `threshold` (within 1e-12), exactly as
    /// [`TokenSet::jaccard_at_least`] decides it. When the pass counts every pair's
    /// common ids in full (rows of one stretch), it also leaves them in `commons`, pair by
    /// pair in the order `i < j`, and returns true. Otherwise `commons` is left empty.
    pub fn pairs_at_least(
        &self,
        threshold: f64,
        each: impl FnMut(usize, usize),
        mut commons: Option<&mut Vec<u32>>,
    ) -> bool {
        if let Some(commons) = commons.as_deref_mut() {
            commons.clear();
        }
        #[cfg(target_arch = "x86_64")]
        {
            if super::has_avx512_popcount()
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx2")
            {
                // SAFETY: the CPU has just been found to support AVX-512F, -VL and
                // VPOPCNTDQ, and AVX2.
                return unsafe { self.pairs_at_least_avx512(threshold, each, commons) };
            }
        }
        self.pairs_at_least_with(
            threshold,
            each,
            commons,
            chunk_portable,
            common_of_eight_portable,
            select_eight_portable,
        )
    }

    /// Calls `each(i, j, jaccard)` for every pair of rows, `i < j` in increasing order,
    /// with the value [`TokenSet::jaccard`] gives.
    pub fn all_pairs(&self, each: impl FnMut(usize, usize, f64)) {
        #[cfg(target_arch = "x86_64")]
        {
            if super::has_avx512_popcount() {
                // SAFETY: the CPU has just been found to support AVX-512F and VPOPCNTDQ.
                return unsafe { self.all_pairs_avx512(each) };
            }
        }
        self.all_pairs_with(each, chunk_portable, common_of_eight_portable);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vl,avx512vpopcntdq,avx2")]
    fn pairs_at_least_avx512(
        &self,
        threshold: f64,
        each: impl FnMut(usize, usize),
        commons: Option<&mut Vec<u32>>,
    ) -> bool {
        self.pairs_at_least_with(
            threshold,
            each,
            commons,
            |a, b| super::popcount_and_avx512(a, b) as u32,
            |a, rows| common_of_eight_avx512(a, rows),
            |la, lens, common, table| select_eight_avx512(la, lens, common, table),
        )
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    fn all_pairs_avx512(&self, each: impl FnMut(usize, usize, f64)) {
        self.all_pairs_with(
            each,
            |a, b| super::popcount_and_avx512(a, b) as u32,
            |a, rows| common_of_eight_avx512(a, rows),
        );
    }

    #[inline(always)]
    fn pairs_at_least_with(
        &self,
        threshold: f64,
        mut each: impl FnMut(usize, usize),
        commons: Option<&mut Vec<u32>>,
        count: impl Fn(&[u64], &[u64]) -> u32,
        count8: impl Fn(&[u64], &[u64]) -> [u32; 8],
        select8: impl Fn(u32, &[u32], &[u32; 8], &[u32]) -> u32,
    ) -> bool {
        let limit = threshold - 1e-12;
        let longest = self.lens.iter().copied().max().unwrap_or(0) as usize;
        // A table of every total pays off once there are more pairs than totals.
        let pairs = self.len() * self.len().saturating_sub(1) / 2;
        let table: Vec<u32> = if pairs > 2 * longest {
            (0..=2 * longest).map(|t| least_common(limit, t)).collect()
        } else {
            Vec::new()
        };
        let need_of = |t: usize| match table.get(t) {
            Some(&need) => need,
            None => least_common(limit, t),
        };
        let chunks = self.chunks;
        if chunks <= STRETCH {
            // Rows of one stretch (vocabularies of up to 2,048 tokens): there is no bound
            // to check part way, so the loop is the size test and the count alone.
            let pairs = self.len() * self.len().saturating_sub(1) / 2;
            // Every group stores all eight counts, a partial one too: the next group's
            // overwrite the extra ones, and eight spare places take the last group's.
            let mut kept: Option<(&mut Vec<u32>, usize)> = commons.map(|commons| {
                commons.resize(pairs + 8, 0);
                (commons, 0)
            });
            self.each_common(&count, &count8, |i, j, common, group| {
                if let Some((commons, at)) = kept.as_mut() {
                    commons[*at..*at + 8].copy_from_slice(common);
                    *at += group;
                }
                let la = self.lens[i];
                // The common ids are at most the smaller set, so a count that reaches
                // `need` needs no test of the sizes.
                let mut hits = if group == 8 && la > 0 && !table.is_empty() {
                    select8(la, &self.lens[j..j + 8], common, &table)
                } else {
                    let mut hits = 0;
                    for (k, &c) in common.iter().enumerate().take(group) {
                        let lb = self.lens[j + k];
                        let hit = if la == 0 && lb == 0 {
                            1.0 >= limit
                        } else {
                            c >= need_of((la + lb) as usize)
                        };
                        hits |= u32::from(hit) << k;
                    }
                    hits
                };
                while hits != 0 {
                    each(i, j + hits.trailing_zeros() as usize);
                    hits &= hits - 1;
                }
            });
            return match kept {
                Some((commons, _)) => {
                    commons.truncate(pairs);
                    true
                }
                None => false,
            };
        }
        for i in 0..self.len() {
            let (a, la) = (self.row(i), self.lens[i]);
            let rest_a = &self.rest[i * chunks..(i + 1) * chunks];
            for j in i + 1..self.len() {
                let lb = self.lens[j];
                if la == 0 && lb == 0 {
                    if 1.0 >= limit {
                        each(i, j);
                    }
                    continue;
                }
                let need = need_of((la + lb) as usize);
                // The common ids are at most the smaller set.
                if la.min(lb) < need {
                    continue;
                }
                let b = self.row(j);
                let rest_b = &self.rest[j * chunks..(j + 1) * chunks];
                let mut common = 0;
                let mut reachable = true;
                // The bound is checked once per stretch of chunks: checking after every
                // chunk would put a long chain of dependent instructions between them.
                for start in (0..chunks).step_by(STRETCH) {
                    let end = (start + STRETCH).min(chunks);
                    let (at, to) = (start * CHUNK, end * CHUNK);
                    common += count(&a[at..to], &b[at..to]);
                    // At best every id left in the smaller rest is common.
                    if common + rest_a[end - 1].min(rest_b[end - 1]) < need {
                        reachable = false;
                        break;
                    }
                }
                if reachable && common >= need {
                    each(i, j);
                }
            }
        }
        false
    }

    #[inline(always)]
    fn all_pairs_with(
        &self,
        mut each: impl FnMut(usize, usize, f64),
        count: impl Fn(&[u64], &[u64]) -> u32,
        count8: impl Fn(&[u64], &[u64]) -> [u32; 8],
    ) {
        self.each_common(count, count8, |i, j, common, group| {
            for (k, &c) in common.iter().enumerate().take(group) {
                each(
                    i,
                    j + k,
                    jaccard_of_counts(c, self.lens[i], self.lens[j + k]),
                );
            }
        });
    }

    /// Calls `visit(i, j, common, group)` for every row `i` and every group of up to
    /// eight rows after it, `j..j + group` in increasing order, with the number of ids
    /// row `i` shares with each (`common[..group]`). Eight rows are counted against one at
    /// a time, so that the eight sums share one reduction.
    #[inline(always)]
    fn each_common(
        &self,
        count: impl Fn(&[u64], &[u64]) -> u32,
        count8: impl Fn(&[u64], &[u64]) -> [u32; 8],
        mut visit: impl FnMut(usize, usize, &[u32; 8], usize),
    ) {
        let width = self.chunks * CHUNK;
        let n = self.len();
        for (i, a) in self.bits.chunks_exact(width).enumerate() {
            let mut j = i + 1;
            while j < n {
                let group = (n - j).min(8);
                let common = if group == 8 {
                    count8(a, &self.bits[j * width..(j + 8) * width])
                } else {
                    let mut common = [0; 8];
                    for (k, c) in common.iter_mut().enumerate().take(group) {
                        *c = count(a, self.row(j + k));
                    }
                    common
                };
                visit(i, j, &common, group);
                j += group;
            }
        }
    }
}

/// The Jaccard similarity of two sets of `la` and `lb` ids that share `common`, as
/// [`TokenSet::jaccard`] computes it.
#[inline]
pub fn jaccard_of_counts(common: u32, la: u32, lb: u32) -> f64 {
    if la == 0 && lb == 0 {
        1.0
    } else {
        f64::from(common) / f64::from(la + lb - common)
    }
}

/// The fewest common ids with which two sets of `t` ids in all reach `limit`: the least
/// `c` with `c / (t - c) >= limit` as [`TokenSet::jaccard_at_least`] computes it
/// (`u32::MAX` when none does). For a fixed total the quotient only grows with `c`, so
/// comparing the common count with it is the same test as dividing.
fn least_common(limit: f64, t: usize) -> u32 {
    let reaches = |c: usize| c < t && c as f64 / (t - c) as f64 >= limit;
    // Common ids are at most half the total; start at the exact root, rounded down.
    let guess = (limit / (1.0 + limit) * t as f64).floor().max(0.0) as usize;
    let mut c = guess.min(t / 2);
    while c > 0 && reaches(c - 1) {
        c -= 1;
    }
    while c <= t / 2 && !reaches(c) {
        c += 1;
    }
    if c <= t / 2 { c as u32 } else { u32::MAX }
}

/// Bit k set when `common[k]` reaches the least common count `table` gives for the
/// total of `la` and `lens[k]` (every total at most `table.len() - 1`).
#[inline(always)]
fn select_eight_portable(la: u32, lens: &[u32], common: &[u32; 8], table: &[u32]) -> u32 {
    common
        .iter()
        .zip(lens)
        .enumerate()
        .fold(0, |hits, (k, (&c, &lb))| {
            hits | u32::from(c >= table[(la + lb) as usize]) << k
        })
}

/// [`select_eight_portable`] with the eight totals, their thresholds and the tests
/// computed together.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2")]
fn select_eight_avx512(la: u32, lens: &[u32], common: &[u32; 8], table: &[u32]) -> u32 {
    use std::arch::x86_64::{
        _mm256_add_epi32, _mm256_cmpge_epu32_mask, _mm256_cmplt_epu32_mask, _mm256_i32gather_epi32,
        _mm256_loadu_si256, _mm256_set1_epi32,
    };
    let lens = &lens[..8];
    // SAFETY: `lens` and `common` are 8 readable u32 each; the loads have no alignment
    // requirement.
    let (lens, common) = unsafe {
        (
            _mm256_loadu_si256(lens.as_ptr().cast()),
            _mm256_loadu_si256(common.as_ptr().cast()),
        )
    };
    let totals = _mm256_add_epi32(lens, _mm256_set1_epi32(la as i32));
    assert_eq!(
        _mm256_cmplt_epu32_mask(totals, _mm256_set1_epi32(table.len() as i32)),
        0xff,
        "every total has a threshold"
    );
    // SAFETY: every index is below `table.len()`, checked just above.
    let need = unsafe { _mm256_i32gather_epi32::<4>(table.as_ptr().cast(), totals) };
    u32::from(_mm256_cmpge_epu32_mask(common, need))
}

#[inline(always)]
fn chunk_portable(a: &[u64], b: &[u64]) -> u32 {
    popcount_and_portable(a, b) as u32
}

/// The ids `a` has in common with each of the eight rows of `rows` (each as long as `a`).
#[inline(always)]
fn common_of_eight_portable(a: &[u64], rows: &[u64]) -> [u32; 8] {
    let mut out = [0; 8];
    for (o, b) in out.iter_mut().zip(rows.chunks_exact(a.len())) {
        *o = chunk_portable(a, b);
    }
    out
}

/// [`common_of_eight_portable`] with AVX-512: the eight sums of per-word counts are
/// added up together, in three rounds of shuffles, instead of one by one.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
fn common_of_eight_avx512(a: &[u64], rows: &[u64]) -> [u32; 8] {
    use std::arch::x86_64::{
        __m512i, _mm512_add_epi64, _mm512_and_si512, _mm512_loadu_si512, _mm512_permutex2var_epi64,
        _mm512_popcnt_epi64, _mm512_set_epi64, _mm512_setzero_si512, _mm512_storeu_si512,
        _mm512_unpackhi_epi64, _mm512_unpacklo_epi64,
    };
    let width = a.len();
    assert!(width.is_multiple_of(CHUNK) && rows.len() == 8 * width);
    let load = |words: &[u64]| -> __m512i {
        // SAFETY: `words` has at least CHUNK (8) words, checked by the slicing below;
        // the load has no alignment requirement.
        unsafe { _mm512_loadu_si512(words.as_ptr().cast()) }
    };
    let mut sums = [_mm512_setzero_si512(); 8];
    for at in (0..width).step_by(CHUNK) {
        let x = load(&a[at..at + CHUNK]);
        for (k, sum) in sums.iter_mut().enumerate() {
            let y = load(&rows[k * width + at..k * width + at + CHUNK]);
            *sum = _mm512_add_epi64(*sum, _mm512_popcnt_epi64(_mm512_and_si512(x, y)));
        }
    }
    // Sums of neighbouring lanes of two vectors, interleaved: [a01, b01, a23, b23, ...].
    let pair = |a: __m512i, b: __m512i| {
        _mm512_add_epi64(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b))
    };
    let (s01, s23, s45, s67) = (
        pair(sums[0], sums[1]),
        pair(sums[2], sums[3]),
        pair(sums[4], sums[5]),
        pair(sums[6], sums[7]),
    );
    // Lanes 0-3 then 4-7 of four rows: [r0 0123, r1 0123, r2 0123, r3 0123, r0 4567, ...].
    let quad = |a: __m512i, b: __m512i| {
        _mm512_add_epi64(
            _mm512_permutex2var_epi64(a, _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0), b),
            _mm512_permutex2var_epi64(a, _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2), b),
        )
    };
    let (q0, q1) = (quad(s01, s23), quad(s45, s67));
    let total = _mm512_add_epi64(
        _mm512_permutex2var_epi64(q0, _mm512_set_epi64(11, 10, 9, 8, 3, 2, 1, 0), q1),
        _mm512_permutex2var_epi64(q0, _mm512_set_epi64(15, 14, 13, 12, 7, 6, 5, 4), q1),
    );
    let mut out = [0u64; 8];
    // SAFETY: 64 writable bytes; the store has no alignment requirement.
    unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), total) };
    out.map(|c| c as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(ids: &[u32]) -> TokenSet {
        let mut s = TokenSet::default();
        for &id in ids {
            s.insert(id);
        }
        s
    }

    proptest! {
        /// The table keeps exactly the pairs, and gives exactly the values, that the
        /// sets compared one pair at a time give: on every CPU path.
        #[test]
        fn the_table_agrees_with_pairwise_comparison(
            // Ids below 700 or 2,000 make rows of one stretch (2 or 4 chunks); below
            // 5,000, of several. Many small sets make more pairs than totals, so the
            // pass looks thresholds up in a table.
            sets in prop_oneof![Just(700u32), Just(2000u32), Just(5000u32)].prop_flat_map(|top| {
                prop_oneof![
                    proptest::collection::vec(proptest::collection::vec(0..top, 0..400), 0..12),
                    proptest::collection::vec(proptest::collection::vec(0..top, 0..12), 0..40),
                ]
            }),
            threshold in prop_oneof![Just(0.0), Just(0.5), Just(0.6), Just(1.0), 0.0f64..1.0],
        ) {
            let sets: Vec<TokenSet> = sets.iter().map(|ids| set(ids)).collect();
            let refs: Vec<&TokenSet> = sets.iter().collect();
            let table = SetTable::new(&refs);
            let mut want = Vec::new();
            let mut values = Vec::new();
            let mut shared = Vec::new();
            for i in 0..sets.len() {
                for j in i + 1..sets.len() {
                    if sets[i].jaccard_at_least(&sets[j], threshold) {
                        want.push((i, j));
                    }
                    values.push((i, j, sets[i].jaccard(&sets[j])));
                    shared.push(sets[i].intersection(&sets[j]) as u32);
                }
            }
            let one_stretch = table.chunks <= STRETCH;
            let mut got = Vec::new();
            let mut commons = vec![7];
            let counted =
                table.pairs_at_least(threshold, |i, j| got.push((i, j)), Some(&mut commons));
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(counted, one_stretch);
            if counted {
                prop_assert_eq!(&commons, &shared);
            } else {
                prop_assert!(commons.is_empty());
            }
            let mut uncounted = Vec::new();
            prop_assert!(!table.pairs_at_least(threshold, |i, j| uncounted.push((i, j)), None));
            prop_assert_eq!(&uncounted, &want);
            let mut portable = Vec::new();
            let mut portable_commons = Vec::new();
            table.pairs_at_least_with(
                threshold,
                |i, j| portable.push((i, j)),
                Some(&mut portable_commons),
                chunk_portable,
                common_of_eight_portable,
                select_eight_portable,
            );
            prop_assert_eq!(&portable, &want);
            prop_assert_eq!(&portable_commons, if one_stretch { &shared } else { &commons });
            let mut all = Vec::new();
            table.all_pairs(|i, j, v| all.push((i, j, v)));
            prop_assert_eq!(&all, &values);
        }
    }
}
