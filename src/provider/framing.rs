//! The framing of streamed bodies: server-sent events and newline-delimited JSON, fed
//! bytes as they arrive and giving back complete frames. Pure: no I/O, so every byte a
//! server could send can be tried on them (see the property tests).

use super::body::{MAX_BODY_BYTES, too_large};
use crate::error::{ErrorKind, ProviderError};

/// How a streamed body is cut into frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Server-sent events (`text/event-stream`).
    Sse,
    /// Server-sent events, where a JSON object written as plain lines between events is
    /// an event too (Google sends errors inside a stream that way).
    SseWithBareJson,
    /// One JSON value per line (`application/x-ndjson`).
    Ndjson,
}

impl Framing {
    /// The content type of a stream framed this way.
    pub fn content_type(self) -> &'static str {
        match self {
            Framing::Sse | Framing::SseWithBareJson => "text/event-stream",
            Framing::Ndjson => "application/x-ndjson",
        }
    }
}

/// One frame: a server-sent event (with its `event:` name), or one NDJSON line.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub event: Option<String>,
    pub data: String,
}

/// Cuts a body into frames as its bytes arrive.
pub enum Decoder {
    Sse(SseParser),
    Ndjson(NdjsonParser),
}

impl Decoder {
    pub fn new(framing: Framing) -> Decoder {
        match framing {
            Framing::Sse => Decoder::Sse(SseParser::default()),
            Framing::SseWithBareJson => Decoder::Sse(SseParser::with_bare_json()),
            Framing::Ndjson => Decoder::Ndjson(NdjsonParser::default()),
        }
    }

    /// Adds bytes; returns the frames they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Frame>, ProviderError> {
        match self {
            Decoder::Sse(p) => p.feed(bytes),
            Decoder::Ndjson(p) => p.feed(bytes),
        }
    }

    /// The frames left open when the body ends.
    pub fn finish(&mut self) -> Result<Vec<Frame>, ProviderError> {
        match self {
            Decoder::Sse(p) => Ok(p.finish()),
            Decoder::Ndjson(p) => p.finish(),
        }
    }
}

/// Newline-delimited JSON framing: each non-blank line is a frame. Lines are split before
/// decoding, so a chunk boundary inside a multi-byte character is harmless; a line that
/// is not UTF-8 is an error.
#[derive(Default)]
pub struct NdjsonParser {
    buf: Vec<u8>,
}

impl NdjsonParser {
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Frame>, ProviderError> {
        // Only the new bytes can hold the next newline.
        let searched = self.buf.len();
        self.buf.extend_from_slice(bytes);
        let mut frames = Vec::new();
        let mut start = 0;
        let mut from = searched;
        while let Some(pos) = memchr::memchr(b'\n', &self.buf[from..]) {
            let end = from + pos;
            push_line(&self.buf[start..end], &mut frames)?;
            start = end + 1;
            from = start;
        }
        self.buf.drain(..start);
        if self.buf.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        Ok(frames)
    }

    pub fn finish(&mut self) -> Result<Vec<Frame>, ProviderError> {
        let mut frames = Vec::new();
        push_line(&std::mem::take(&mut self.buf), &mut frames)?;
        Ok(frames)
    }
}

fn push_line(raw: &[u8], frames: &mut Vec<Frame>) -> Result<(), ProviderError> {
    let text = std::str::from_utf8(raw)
        .map_err(|_| ProviderError::new(ErrorKind::Malformed, "the stream is not valid UTF-8"))?;
    let text = text.trim();
    if !text.is_empty() {
        frames.push(Frame {
            event: None,
            data: text.to_string(),
        });
    }
    Ok(())
}

/// Server-sent events framing: feed bytes, get complete events.
#[derive(Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
    /// Whether a JSON object written as plain lines between events is an event too.
    bare_json: bool,
    gathering: Option<BareJson>,
}

/// A JSON object arriving line by line outside any `data:` field; complete when its
/// braces and brackets balance (those inside strings do not count).
#[derive(Default)]
struct BareJson {
    text: String,
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl BareJson {
    fn push(&mut self, line: &str) {
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        self.text.push_str(line);
        for c in line.chars() {
            if self.in_string {
                match c {
                    _ if self.escaped => self.escaped = false,
                    '\\' => self.escaped = true,
                    '"' => self.in_string = false,
                    _ => {}
                }
            } else {
                match c {
                    '"' => self.in_string = true,
                    '{' | '[' => self.depth += 1,
                    '}' | ']' => self.depth = self.depth.saturating_sub(1),
                    _ => {}
                }
            }
        }
    }
}

impl SseParser {
    /// A parser that also takes a JSON object written as plain lines between events (not
    /// in a `data:` field, possibly over several lines) as one event. Google's API sends an
    /// error inside a stream that way; its SDK gathers the lines until the braces balance.
    pub fn with_bare_json() -> SseParser {
        SseParser {
            bare_json: true,
            ..SseParser::default()
        }
    }

    /// Adds bytes; returns the events they complete. Invalid UTF-8 in a line is an error.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Frame>, ProviderError> {
        // Only the new bytes can hold the next newline: a long line costs linear time.
        let mut from = self.buf.len();
        self.buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(pos) = memchr::memchr(b'\n', &self.buf[from..]) {
            let end = from + pos;
            let mut line = &self.buf[start..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = std::str::from_utf8(line)
                .map_err(|_| {
                    ProviderError::new(ErrorKind::Malformed, "the event stream is not valid UTF-8")
                })?
                .to_string();
            self.line(&line, &mut events);
            start = end + 1;
            from = start;
        }
        self.buf.drain(..start);
        let gathered = self.gathering.as_ref().map_or(0, |g| g.text.len());
        let data = self.data.as_ref().map_or(0, String::len);
        if self.buf.len() + gathered + data > MAX_BODY_BYTES {
            return Err(too_large());
        }
        Ok(events)
    }

    /// Flushes what is left open when the stream ends: an event without its blank line,
    /// or an unfinished bare JSON object (which then fails to parse, naming the problem).
    pub fn finish(&mut self) -> Vec<Frame> {
        let mut events = Vec::new();
        if !self.buf.is_empty() {
            let rest = String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
            self.line(rest.trim_end_matches('\r'), &mut events);
        }
        if let Some(data) = self.data.take() {
            events.push(Frame {
                event: self.event.take(),
                data,
            });
        }
        if let Some(json) = self.gathering.take() {
            events.push(Frame {
                event: None,
                data: json.text,
            });
        }
        events
    }

    fn line(&mut self, line: &str, events: &mut Vec<Frame>) {
        let bare = self.bare_json && self.data.is_none() && line.trim_start().starts_with('{');
        if self.gathering.is_some() || bare {
            let json = self.gathering.get_or_insert_with(BareJson::default);
            json.push(line);
            if json.depth == 0 && !json.in_string {
                let json = self.gathering.take().unwrap_or_default();
                events.push(Frame {
                    event: None,
                    data: json.text,
                });
            }
            return;
        }
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                events.push(Frame {
                    event: self.event.take(),
                    data,
                });
            } else {
                self.event = None;
            }
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            "event" => self.event = Some(value.to_string()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_framing_follows_the_spec() {
        let mut p = SseParser::default();
        let mut events = p
            .feed(b": keep-alive\r\ndata: {\"a\":1}\r\n\r\nevent: error\ndata:x\ndata: y\n")
            .unwrap();
        assert_eq!(
            events.remove(0),
            Frame {
                event: None,
                data: "{\"a\":1}".into()
            }
        );
        assert!(events.is_empty());
        let events = p.feed(b"\n").unwrap();
        assert_eq!(
            events,
            vec![Frame {
                event: Some("error".into()),
                data: "x\ny".into()
            }]
        );
    }

    #[test]
    fn a_bare_json_object_over_several_lines_is_one_event() {
        let body = "data: {\"a\":1}\r\n\r\n{\n  \"error\": {\n    \"code\": 503,\n    \"message\": \"busy } {[\\\"\",\n    \"details\": []\n  }\n}\n";
        let mut p = SseParser::with_bare_json();
        let mut events = Vec::new();
        // Fed a few bytes at a time, so lines and braces straddle the pieces.
        for piece in body.as_bytes().chunks(5) {
            events.extend(p.feed(piece).unwrap());
        }
        events.extend(p.finish());
        assert_eq!(events.len(), 2, "{events:?}");
        let error: serde_json::Value = serde_json::from_str(&events[1].data).unwrap();
        assert_eq!(error["error"]["message"], "busy } {[\"");
        assert_eq!(error["error"]["code"], 503);

        // Without the option, such lines are unknown fields and ignored, as the spec says.
        let mut p = SseParser::default();
        let mut events = p.feed(body.as_bytes()).unwrap();
        events.extend(p.finish());
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn a_multibyte_character_split_across_chunks_survives() {
        let mut p = SseParser::default();
        let bytes = "data: é\n\n".as_bytes();
        let mut events = p.feed(&bytes[..7]).unwrap();
        events.extend(p.feed(&bytes[7..]).unwrap());
        assert_eq!(events[0].data, "é");

        let mut p = NdjsonParser::default();
        let bytes = "{\"a\":\"é\"}\n\n{\"b\":1}".as_bytes();
        let mut lines = p.feed(&bytes[..8]).unwrap();
        lines.extend(p.feed(&bytes[8..]).unwrap());
        lines.extend(p.finish().unwrap());
        let data: Vec<_> = lines.iter().map(|f| f.data.as_str()).collect();
        assert_eq!(data, ["{\"a\":\"é\"}", "{\"b\":1}"]);
    }
}
