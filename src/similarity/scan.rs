//! Tokens of ASCII text, 64 bytes at a time.
//!
//! A block of text becomes a bitmask of the bytes that belong to a token (SSE2 on x86_64,
//! a table lookup elsewhere); the edges of the mask are the tokens' starts and ends, found
//! with `trailing_zeros`. A token of at most eight bytes is then read with one 8-byte load
//! and hashed as a single word. The result equals [`ascii_runs`] followed by
//! [`hash_lower_ascii`] on every input, which the tests check.
//!
//! [`ascii_runs`]: super::ascii_runs

use super::{ByteClass, hash_lower_ascii, lower_ascii_word, short_key};

/// Which bytes make up a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenClass {
    /// ASCII letters and digits.
    AsciiAlnum,
    /// Every ASCII byte but the ones Python's `str.split()` treats as whitespace:
    /// \t \n \v \f \r, space and the separators \x1c..\x1f.
    PyWord,
}

/// The ASCII bytes that are not whitespace to Python's `str.split()`.
pub static PY_ASCII_WORD: ByteClass = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 128 {
        t[b] = !matches!(b as u8, b'\t'..=b'\r' | b' ' | 0x1c..=0x1f);
        b += 1;
    }
    t
};

impl TokenClass {
    /// The class as a byte table (true for token bytes; bytes >= 0x80 are never members).
    pub fn table(self) -> &'static ByteClass {
        match self {
            TokenClass::AsciiAlnum => &super::ASCII_ALNUM,
            TokenClass::PyWord => &PY_ASCII_WORD,
        }
    }
}

/// Calls `each` with [`hash_lower_ascii`] of every maximal run of `class` bytes of
/// `bytes`, in order. Meant for ASCII text: bytes >= 0x80 are treated as members by the
/// SIMD paths and as non-members by the table, so callers pass ASCII only.
#[inline]
pub fn for_each_token_hash(bytes: &[u8], class: TokenClass, each: impl FnMut(u64)) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU has just been found to support AVX-512BW (and so AVX-512F).
            return unsafe { scan_avx512(bytes, class, each) };
        }
    }
    scan_with(bytes, class, each, block_mask);
}

/// Appends the key of every token of `bytes` to `out`: the keys [`for_each_token_hash`]
/// gives, in order. With AVX-512 VBMI2, eight short tokens at a time.
pub fn token_keys(bytes: &[u8], class: TokenClass, out: &mut Vec<u64>) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vbmi")
            && std::arch::is_x86_feature_detected!("avx512vbmi2")
            && std::arch::is_x86_feature_detected!("popcnt")
        {
            // SAFETY: the CPU has just been found to support AVX-512BW, VBMI and VBMI2, and
            // POPCNT.
            return unsafe { token_keys_vbmi(bytes, class, out) };
        }
    }
    for_each_token_hash(bytes, class, |h| out.push(h));
}

/// [`token_keys`] with AVX-512 VBMI2. For each block of 64 bytes, with the 64 after it
/// in view: the positions of the tokens that start in the block, and of their ends, are
/// compressed into two vectors of bytes; then eight tokens at a time, each token's bytes
/// are gathered into a lane of eight from the 128 in view, lowercased and marked with
/// their length, exactly as [`short_key`] does one by one. Tokens longer than eight
/// bytes are keyed one by one afterwards. The last, partial blocks go to the scan.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vbmi2,popcnt")]
fn token_keys_vbmi(bytes: &[u8], class: TokenClass, out: &mut Vec<u64>) {
    use std::arch::x86_64::{
        __m512i, _mm512_add_epi8, _mm512_cmpeq_epi8_mask, _mm512_cmpgt_epu8_mask,
        _mm512_cmplt_epu8_mask, _mm512_loadu_si512, _mm512_mask_add_epi8,
        _mm512_mask_permutexvar_epi8, _mm512_maskz_compress_epi8, _mm512_maskz_mov_epi8,
        _mm512_maskz_permutex2var_epi8, _mm512_or_si512, _mm512_permutexvar_epi8, _mm512_set1_epi8,
        _mm512_storeu_si512, _mm512_sub_epi8,
    };
    /// Byte i is `i / div % modulo`.
    const fn pattern(div: usize, modulo: usize) -> [u8; 64] {
        let mut out = [0; 64];
        let mut i = 0;
        while i < 64 {
            out[i] = (i / div % modulo) as u8;
            i += 1;
        }
        out
    }
    static IOTA: [u8; 64] = pattern(1, 64);
    // Of each byte of a vector of eight 8-byte lanes: its lane, and its place in it.
    static LANE: [u8; 64] = pattern(8, 8);
    static PLACE: [u8; 64] = pattern(1, 8);
    let load = |bytes: &[u8; 64]| -> __m512i {
        // SAFETY: 64 readable bytes; the load has no alignment requirement.
        unsafe { _mm512_loadu_si512(bytes.as_ptr().cast()) }
    };
    let (iota, lane, place) = (load(&IOTA), load(&LANE), load(&PLACE));
    let table = class.table();
    let len = bytes.len();
    // At most one token per two bytes, and room for the last group's whole store.
    out.reserve(len.div_ceil(2) + 8);
    let mut count = out.len();
    let keys = out.as_mut_ptr();
    let mut carry = 0u64;
    let mut base = 0;
    while base + 128 <= len {
        let window: &[u8; 128] = bytes[base..base + 128].try_into().expect("128 bytes");
        let (lo_bytes, hi_bytes) = window.split_at(64);
        let lo_bytes: &[u8; 64] = lo_bytes.try_into().expect("64 bytes");
        let hi_bytes: &[u8; 64] = hi_bytes.try_into().expect("64 bytes");
        let (m_lo, m_hi) = (
            block_mask_avx512(lo_bytes, class),
            block_mask_avx512(hi_bytes, class),
        );
        let starts = m_lo & !((m_lo << 1) | carry);
        if starts != 0 {
            // Bit i: byte i is the first after a token (over the 128 bytes in view).
            let mut e_lo = !m_lo & ((m_lo << 1) | carry);
            let e_hi = !m_hi & ((m_hi << 1) | (m_lo >> 63));
            if carry != 0 {
                // The first end closes the token carried in from the block before.
                e_lo &= e_lo - 1;
            }
            let tokens = starts.count_ones();
            let at = _mm512_maskz_compress_epi8(starts, iota);
            let ends_lo = e_lo.count_ones();
            let ends = _mm512_mask_permutexvar_epi8(
                _mm512_maskz_compress_epi8(e_lo, iota),
                u64::MAX.checked_shl(ends_lo).unwrap_or(0),
                _mm512_sub_epi8(iota, _mm512_set1_epi8(ends_lo as i8)),
                _mm512_maskz_compress_epi8(e_hi, _mm512_add_epi8(iota, _mm512_set1_epi8(64))),
            );
            let found = ends_lo + e_hi.count_ones();
            let lengths = _mm512_sub_epi8(ends, at);
            // Tokens of more than eight bytes, or that run past the bytes in view.
            let long = (_mm512_cmpgt_epu8_mask(lengths, _mm512_set1_epi8(8))
                | u64::MAX.checked_shl(found).unwrap_or(0))
                & !u64::MAX.checked_shl(tokens).unwrap_or(0);
            let (lo, hi) = (load(lo_bytes), load(hi_bytes));
            for group in 0..tokens.div_ceil(8) {
                let spread = _mm512_add_epi8(lane, _mm512_set1_epi8(8 * group as i8));
                let start = _mm512_permutexvar_epi8(spread, at);
                let length = _mm512_permutexvar_epi8(spread, lengths);
                let inside = _mm512_cmplt_epu8_mask(place, length);
                let word =
                    _mm512_maskz_permutex2var_epi8(inside, lo, _mm512_add_epi8(start, place), hi);
                let word = match class {
                    // Letters and digits: the 0x20 bit lowercases every one of them.
                    TokenClass::AsciiAlnum => {
                        _mm512_or_si512(word, _mm512_maskz_mov_epi8(inside, _mm512_set1_epi8(0x20)))
                    }
                    TokenClass::PyWord => {
                        let upper = _mm512_cmplt_epu8_mask(
                            _mm512_sub_epi8(word, _mm512_set1_epi8(b'A' as i8)),
                            _mm512_set1_epi8(26),
                        ) & inside;
                        _mm512_mask_add_epi8(word, upper, word, _mm512_set1_epi8(0x20))
                    }
                };
                // The length mark: the top bit of the last byte.
                let last =
                    _mm512_cmpeq_epi8_mask(place, _mm512_sub_epi8(length, _mm512_set1_epi8(1)));
                let word = _mm512_or_si512(
                    word,
                    _mm512_maskz_mov_epi8(last, _mm512_set1_epi8(0x80u8 as i8)),
                );
                // SAFETY: `count + 8 * group + 8` is within the room reserved above: the
                // tokens so far, this block's, and the 8 spare keys.
                unsafe { _mm512_storeu_si512(keys.add(count + 8 * group as usize).cast(), word) };
            }
            if long != 0 {
                let mut starts_at = [0u8; 64];
                // SAFETY: 64 writable bytes; the store has no alignment requirement.
                unsafe { _mm512_storeu_si512(starts_at.as_mut_ptr().cast(), at) };
                let mut long = long;
                while long != 0 {
                    let i = long.trailing_zeros() as usize;
                    long &= long - 1;
                    let start = base + usize::from(starts_at[i]);
                    let end = bytes[start..]
                        .iter()
                        .position(|&b| !table[usize::from(b)])
                        .map_or(len, |n| start + n);
                    // SAFETY: slot `count + i` is within the room reserved above.
                    unsafe {
                        keys.add(count + i)
                            .write(hash_lower_ascii(&bytes[start..end]))
                    };
                }
            }
            count += tokens as usize;
        }
        carry = m_lo >> 63;
        base += 64;
    }
    // SAFETY: every key below `count` has been written.
    unsafe { out.set_len(count) };
    // The rest goes to the scan, from the first token that starts in it.
    let mut rest = base.min(len);
    if carry != 0 {
        while rest < len && table[usize::from(bytes[rest])] {
            rest += 1;
        }
    }
    for_each_token_hash(&bytes[rest..], class, |h| out.push(h));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
fn scan_avx512(bytes: &[u8], class: TokenClass, each: impl FnMut(u64)) {
    scan_with(bytes, class, each, |block, class| {
        block_mask_avx512(block, class)
    });
}

/// The scan, with `block` giving the member mask of 64 bytes of a class.
#[inline(always)]
fn scan_with(
    bytes: &[u8],
    class: TokenClass,
    each: impl FnMut(u64),
    block: impl Fn(&[u8; 64], TokenClass) -> u64,
) {
    // One copy of the loop per class, with the class's mask and lowercasing fixed.
    match class {
        // Every byte of such a token is a letter or a digit, and digits already have the
        // 0x20 bit: setting it in every byte lowercases the whole word.
        TokenClass::AsciiAlnum => scan_class(
            bytes,
            class.table(),
            each,
            |b| block(b, TokenClass::AsciiAlnum),
            |w| w | 0x2020_2020_2020_2020,
        ),
        TokenClass::PyWord => scan_class(
            bytes,
            class.table(),
            each,
            |b| block(b, TokenClass::PyWord),
            lower_ascii_word,
        ),
    }
}

/// The scan of one class, `lower` lowercasing eight of its bytes at once.
///
/// Per block, the tokens' starts and ends are two bitmasks; the k-th start pairs with the
/// k-th end (after the end of a token carried in from the block before), so the loop
/// runs once per token with no branch on whether it is inside one.
#[inline(always)]
fn scan_class(
    bytes: &[u8],
    table: &ByteClass,
    mut each: impl FnMut(u64),
    block: impl Fn(&[u8; 64]) -> u64,
    lower: impl Fn(u64) -> u64,
) {
    let len = bytes.len();
    // Whether the byte before the current block belongs to a token, and where that
    // token starts.
    let mut carry = 0u64;
    let mut start = 0;
    let mut base = 0;
    while base < len {
        let n = (len - base).min(64);
        let mask = if n == 64 {
            block(bytes[base..base + 64].try_into().expect("64 bytes"))
        } else {
            // Bits n.. are clear: a token reaching the end of the text ends at bit n.
            table_mask(&bytes[base..], table)
        };
        let before = (mask << 1) | carry;
        let mut starts = mask & !before;
        // Bit i: byte i is the first after a token.
        let mut ends = !mask & before;
        if carry != 0 {
            if ends == 0 {
                // The carried token spans this whole block.
                base += 64;
                continue;
            }
            each(token_hash(
                bytes,
                start,
                base + ends.trailing_zeros() as usize,
                &lower,
            ));
            ends &= ends - 1;
        }
        carry = mask >> 63;
        while starts != 0 {
            let at = base + starts.trailing_zeros() as usize;
            starts &= starts - 1;
            if ends == 0 {
                // The last token of the block runs on into the next.
                start = at;
                break;
            }
            each(token_hash(
                bytes,
                at,
                base + ends.trailing_zeros() as usize,
                &lower,
            ));
            ends &= ends - 1;
        }
        base += 64;
    }
    if carry != 0 {
        each(token_hash(bytes, start, len, &lower));
    }
}

/// [`hash_lower_ascii`] of `bytes[start..end]`; inlined into the scan loop, where a call
/// per token would cost as much as the hashing.
#[inline(always)]
fn token_hash(bytes: &[u8], start: usize, end: usize, lower: impl Fn(u64) -> u64) -> u64 {
    let n = end - start;
    if n <= 8 && start + 8 <= bytes.len() {
        let word = u64::from_le_bytes(bytes[start..start + 8].try_into().expect("8 bytes"));
        // Keep the token's n bytes: the rest reads as the zero padding of a short word.
        short_key(lower(word) & (u64::MAX >> (64 - 8 * n)), n)
    } else {
        hash_long(&bytes[start..end])
    }
}

/// Tokens longer than eight bytes, and short ones within eight bytes of the end.
#[inline(never)]
fn hash_long(token: &[u8]) -> u64 {
    hash_lower_ascii(token)
}

/// Bit i set when `bytes[i]` is a member (at most 64 bytes).
#[inline]
fn table_mask(bytes: &[u8], table: &ByteClass) -> u64 {
    bytes
        .iter()
        .take(64)
        .enumerate()
        .fold(0, |m, (i, &b)| m | (u64::from(table[usize::from(b)]) << i))
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn block_mask(block: &[u8; 64], class: TokenClass) -> u64 {
    table_mask(block, class.table())
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn block_mask(block: &[u8; 64], class: TokenClass) -> u64 {
    // SAFETY: SSE2 is part of the x86_64 baseline: every x86_64 CPU has it.
    unsafe { block_mask_sse2(block, class) }
}

#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "sse2")]
fn block_mask_sse2(block: &[u8; 64], class: TokenClass) -> u64 {
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_cmpgt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    /// 0xff in the bytes of `x` in `lo..=hi`. Bytes are compared as signed: the ASCII
    /// ones are 0..=127, the others negative.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn between(x: __m128i, lo: u8, hi: u8) -> __m128i {
        _mm_and_si128(
            _mm_cmpgt_epi8(x, _mm_set1_epi8(lo as i8 - 1)),
            _mm_cmpgt_epi8(_mm_set1_epi8(hi as i8 + 1), x),
        )
    }
    let mut mask = 0u64;
    for (i, chunk) in block.chunks_exact(16).enumerate() {
        // SAFETY: `chunk` is 16 readable bytes; the load has no alignment requirement.
        let x = unsafe { _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>()) };
        let bits = match class {
            TokenClass::AsciiAlnum => {
                let folded = _mm_or_si128(x, _mm_set1_epi8(0x20));
                _mm_movemask_epi8(_mm_or_si128(
                    between(x, b'0', b'9'),
                    between(folded, b'a', b'z'),
                ))
            }
            TokenClass::PyWord => {
                let space = _mm_or_si128(between(x, b'\t', b'\r'), between(x, 0x1c, b' '));
                // Everything but whitespace, including the bytes >= 0x80.
                !_mm_movemask_epi8(space) & 0xffff
            }
        };
        mask |= u64::from(bits as u16) << (16 * i);
    }
    mask
}

/// [`block_mask`] with AVX-512BW: a byte is in a range `lo..=hi` when `byte - lo`,
/// wrapping, is below `hi - lo + 1`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn block_mask_avx512(block: &[u8; 64], class: TokenClass) -> u64 {
    use std::arch::x86_64::{
        __m512i, _mm512_cmplt_epu8_mask, _mm512_loadu_si512, _mm512_or_si512, _mm512_set1_epi8,
        _mm512_sub_epi8,
    };
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn within(x: __m512i, lo: u8, hi: u8) -> u64 {
        _mm512_cmplt_epu8_mask(
            _mm512_sub_epi8(x, _mm512_set1_epi8(lo as i8)),
            _mm512_set1_epi8((hi - lo + 1) as i8),
        )
    }
    // SAFETY: `block` is 64 readable bytes; the load has no alignment requirement.
    let x = unsafe { _mm512_loadu_si512(block.as_ptr().cast()) };
    match class {
        TokenClass::AsciiAlnum => {
            let folded = _mm512_or_si512(x, _mm512_set1_epi8(0x20));
            within(x, b'0', b'9') | within(folded, b'a', b'z')
        }
        // Everything but whitespace, including the bytes >= 0x80.
        TokenClass::PyWord => !(within(x, b'\t', b'\r') | within(x, 0x1c, b' ')),
    }
}

#[cfg(test)]
mod tests {
    use super::super::ascii_runs;
    use super::*;
    use proptest::prelude::*;

    fn simple(text: &str, class: TokenClass) -> Vec<u64> {
        ascii_runs(text.as_bytes(), class.table())
            .map(hash_lower_ascii)
            .collect()
    }

    /// The scan as the CPU runs it, checked against the SSE2 (or table) path too.
    fn fast(text: &str, class: TokenClass) -> Vec<u64> {
        let mut out = Vec::new();
        for_each_token_hash(text.as_bytes(), class, |h| out.push(h));
        let mut baseline = Vec::new();
        scan_with(text.as_bytes(), class, |h| baseline.push(h), block_mask);
        assert_eq!(out, baseline, "{text:?}");
        out
    }

    const CLASSES: [TokenClass; 2] = [TokenClass::AsciiAlnum, TokenClass::PyWord];

    #[test]
    fn block_masks_equal_the_tables_on_every_ascii_byte() {
        for class in CLASSES {
            for b in 0u8..128 {
                let block = [b; 64];
                let want = if class.table()[usize::from(b)] {
                    u64::MAX
                } else {
                    0
                };
                assert_eq!(block_mask(&block, class), want, "{class:?} {b:#x}");
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx512_block_masks_equal_the_tables_on_every_byte() {
        if !std::arch::is_x86_feature_detected!("avx512bw") {
            return;
        }
        for class in CLASSES {
            for b in 0u8..=255 {
                let mut block = [b' '; 64];
                block[7] = b;
                block[63] = b;
                // SAFETY: the CPU has just been found to support AVX-512BW.
                let got = unsafe { block_mask_avx512(&block, class) };
                let sse = block_mask(&block, class);
                assert_eq!(got, sse, "{class:?} {b:#x}");
                if b < 0x80 {
                    let want = table_mask(&block, class.table());
                    assert_eq!(got, want, "{class:?} {b:#x}");
                }
            }
        }
    }

    #[test]
    fn the_portable_scan_equals_the_simple_one_on_long_tokens() {
        for len in [1, 8, 63, 64, 65, 128, 129, 200] {
            let text = format!(" {} x{}", "a".repeat(len), " ".repeat(len % 7));
            for class in CLASSES {
                let mut out = Vec::new();
                scan_with(
                    text.as_bytes(),
                    class,
                    |h| out.push(h),
                    |b, class| table_mask(b, class.table()),
                );
                assert_eq!(out, simple(&text, class), "{text:?}");
            }
        }
    }

    #[test]
    fn tokens_at_block_and_load_boundaries() {
        // Tokens that end exactly at, just before and just after 8, 15, 16, 17, 63, 64
        // and 65 bytes, with and without a separator at the end of the text.
        for len in [1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 127, 128, 129] {
            for lead in [0, 1, 7, 8, 9, 56, 57, 63, 64] {
                for tail in ["", " ", ". x", "\u{1f}"] {
                    let text = format!("{}{}{}", " ".repeat(lead), &"Ab9".repeat(len)[..len], tail);
                    for class in CLASSES {
                        assert_eq!(fast(&text, class), simple(&text, class), "{text:?}");
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn the_fast_scan_equals_the_simple_one(text in "[ -~\t\n\r\u{b}\u{c}\u{1c}-\u{1f}\0]{0,300}") {
            for class in CLASSES {
                prop_assert_eq!(fast(&text, class), simple(&text, class));
            }
        }

        #[test]
        fn the_fast_scan_equals_the_simple_one_on_words(
            words in proptest::collection::vec("[a-zA-Z0-9.,!]{1,20}", 0..40),
            seps in proptest::collection::vec("[ \t\n.\u{1c}-\u{1f}]{1,3}", 40),
        ) {
            let mut text = String::new();
            for (w, s) in words.iter().zip(&seps) {
                text.push_str(w);
                text.push_str(s);
            }
            for class in CLASSES {
                prop_assert_eq!(fast(&text, class), simple(&text, class));
                let trimmed = text.trim_end();
                prop_assert_eq!(fast(trimmed, class), simple(trimmed, class));
            }
        }

        /// Keys eight at a time (where the CPU has VBMI2) equal the scan's, over texts long
        /// enough for many blocks, with words short and long, and runs of either kind
        /// across block edges.
        #[test]
        fn batched_keys_equal_the_simple_ones(
            words in proptest::collection::vec(
                prop_oneof![
                    4 => "[a-zA-Z0-9]{1,8}",
                    1 => "[a-zA-Z0-9!.@_]{9,80}",
                    1 => "[A-Z`~]{1,3}",
                ],
                0..120,
            ),
            seps in proptest::collection::vec("[ \t\n.,\u{1c}-\u{1f}]{1,70}", 120),
            lead in "[ a-z]{0,70}",
        ) {
            let mut text = lead;
            for (w, s) in words.iter().zip(&seps) {
                text.push_str(w);
                text.push_str(&s[..s.len().min(if w.len() % 5 == 0 { 70 } else { 2 })]);
            }
            for class in CLASSES {
                for end in [text.len(), text.len() / 2, text.len().saturating_sub(1)] {
                    let part = &text[..end];
                    let mut got = Vec::new();
                    token_keys(part.as_bytes(), class, &mut got);
                    prop_assert_eq!(got, simple(part, class), "{:?}", part);
                }
            }
        }
    }
}
