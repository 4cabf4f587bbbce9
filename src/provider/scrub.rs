//! Keeping secrets out of text: every configured key is replaced by `<redacted>` in any
//! text that came from outside before it is shown, stored, cut or forwarded.

use std::borrow::Cow;

/// What a secret becomes in scrubbed text.
pub const REDACTED: &str = "<redacted>";

/// Secrets shorter than this are not scrubbed: they cannot be told apart from ordinary
/// text (and no real API key is that short).
pub const MIN_SECRET_LEN: usize = 8;

/// A set of secrets to remove from text.
#[derive(Clone, Default)]
pub struct Scrubber {
    /// Longest first, so that a key containing another is replaced whole.
    secrets: Vec<String>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scrubber({} secrets)", self.secrets.len())
    }
}

impl Scrubber {
    pub fn new<S: AsRef<str>>(secrets: impl IntoIterator<Item = S>) -> Scrubber {
        let mut scrubber = Scrubber::default();
        for secret in secrets {
            scrubber.add(secret.as_ref());
        }
        scrubber
    }

    /// Adds a secret (ignored when too short or already known).
    pub fn add(&mut self, secret: &str) {
        if secret.len() >= MIN_SECRET_LEN && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_string());
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every secret replaced by [`REDACTED`]; borrowed when there is none.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
            }
        }
        out
    }

    /// [`Scrubber::scrub`] for bytes that may not be UTF-8 (a response body), so that a
    /// body is scrubbed before anything parses, quotes or cuts it.
    pub fn scrub_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        let mut out = Cow::Borrowed(bytes);
        for secret in &self.secrets {
            let needle = secret.as_bytes();
            if memchr::memmem::find(&out, needle).is_none() {
                continue;
            }
            let mut replaced = Vec::with_capacity(out.len());
            let mut rest: &[u8] = &out;
            while let Some(at) = memchr::memmem::find(rest, needle) {
                replaced.extend_from_slice(&rest[..at]);
                replaced.extend_from_slice(REDACTED.as_bytes());
                rest = &rest[at + needle.len()..];
            }
            replaced.extend_from_slice(rest);
            out = Cow::Owned(replaced);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_secret_goes_and_short_ones_are_ignored() {
        let s = Scrubber::new(["sk-abcdefgh", "sk-abcdefgh-longer", "short"]);
        assert_eq!(
            s.scrub("a sk-abcdefgh-longer b sk-abcdefgh c short"),
            "a <redacted> b <redacted> c short"
        );
        assert!(matches!(s.scrub("nothing here"), Cow::Borrowed(_)));
        assert_eq!(
            &*s.scrub_bytes(b"\xffsk-abcdefgh\xfe"),
            b"\xff<redacted>\xfe".as_slice()
        );
    }
}
