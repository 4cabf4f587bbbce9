//! Keys stay home. A provider may quote a key back, in an error page or inside a
//! successful answer; the answer would then be printed, stored in the transcript, and
//! quoted in the prompts sent to every other provider. A [`Scrubber`] of every
//! [`secrets`] of the run cleans each provider result where it enters the run
//! ([`outcome`], [`retry`]), before anything else sees it.

use std::borrow::Cow;

use crate::config::Settings;
use crate::provider::Outcome;
pub use crate::provider::Scrubber;
use crate::provider::http::Retry;

/// The secrets of a run: every seat's and the synthesizer's key, and any
/// `user:password@` in their base URLs, in each form it is sent in.
pub fn secrets(settings: &Settings) -> Vec<String> {
    let mut secrets = Vec::new();
    for seat in settings.seats.iter().chain(&settings.synthesizer) {
        if let Some(key) = seat.provider.key() {
            secrets.push(key.expose().to_string());
        }
        if let Some(url) = seat.provider.base_url() {
            secrets.extend(userinfo_secrets(url));
        }
    }
    secrets
}

/// The boundary: a call's answer, error message and partial output, scrubbed in place.
pub fn outcome(scrubber: &Scrubber, outcome: &mut Outcome) {
    let clean = |text: &mut String| {
        if let Cow::Owned(clean) = scrubber.scrub(text) {
            *text = clean;
        }
    };
    match &mut outcome.result {
        Ok(completion) => clean(&mut completion.text),
        Err(e) => {
            clean(&mut e.message);
            clean(&mut e.output);
        }
    }
}

/// Hands `retry` to `f` with its reason scrubbed (retry reasons quote the provider).
pub fn retry(scrubber: &Scrubber, retry: &Retry<'_>, f: impl FnOnce(&Retry<'_>)) {
    let reason = scrubber.scrub(retry.reason);
    f(&Retry {
        reason: &reason,
        ..*retry
    })
}

/// The secrets in a URL's `user:password@`: the user info and the password, as written
/// and percent-decoded, and the Basic authorization they are sent as.
fn userinfo_secrets(url: &str) -> Vec<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let Some((userinfo, _host)) = authority.rsplit_once('@') else {
        return Vec::new();
    };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let (user, password) = (percent_decode(user), percent_decode(password));
    let mut secrets = vec![
        userinfo.to_string(),
        format!("{user}:{password}"),
        base64(format!("{user}:{password}").as_bytes()),
    ];
    if password.is_empty() {
        // A token in place of the user name (`https://TOKEN@host`).
        secrets.push(user);
    } else {
        secrets.push(password);
        secrets.extend(userinfo.split_once(':').map(|(_, p)| p.to_string()));
    }
    secrets
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Standard base64 with padding, as in a Basic authorization header.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_secret_is_replaced_and_short_ones_are_left_alone() {
        let s = Scrubber::new(["sk-abcdefgh", "short"]);
        assert_eq!(
            s.scrub("key sk-abcdefgh and sk-abcdefgh, short"),
            "key <redacted> and <redacted>, short"
        );
    }

    #[test]
    fn a_secret_containing_another_is_replaced_whole() {
        let s = Scrubber::new(["abcdefgh", "abcdefgh-ijklmnop"]);
        assert_eq!(s.scrub("[abcdefgh-ijklmnop]"), "[<redacted>]");
    }

    #[test]
    fn userinfo_yields_the_password_in_every_form_it_is_sent_in() {
        let secrets = userinfo_secrets("https://me:p%40ss-word-1@host:8080/v1?x=a@b");
        for expected in [
            "me:p%40ss-word-1",
            "me:p@ss-word-1",
            "p@ss-word-1",
            "p%40ss-word-1",
            &base64(b"me:p@ss-word-1"),
        ] {
            assert!(
                secrets.iter().any(|s| s == expected),
                "{expected}: {secrets:?}"
            );
        }
        assert!(userinfo_secrets("http://127.0.0.1:1/a@b").is_empty());
        let token = userinfo_secrets("https://ghp_token12345@host");
        assert!(token.iter().any(|s| s == "ghp_token12345"), "{token:?}");
    }

    #[test]
    fn base64_matches_the_standard_encoding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }
}
