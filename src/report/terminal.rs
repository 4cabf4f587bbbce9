//! Writing untrusted text to a terminal. Answers, error messages and seat names come
//! from models, providers and config files: a control character in them could clear the
//! screen, set the window title, move the cursor back over a line (a fake `✔ FINAL`) or
//! reverse the text that follows. Every text path (the report, `-q`, `-v` and progress
//! lines) shows such characters as visible escapes through [`visible`]; the JSON keeps
//! them, escaped by serde.

use std::borrow::Cow;
use std::fmt;

/// `text` with every character that could steer a terminal written as a visible escape
/// `\u{HEX}` (ESC is `\u{1b}`, a carriage return `\u{d}`, U+202E `\u{202e}`). Newlines and
/// tabs stay, and so does a carriage return right before a newline (it overwrites
/// nothing). Borrowed when there is nothing to escape, which is the common case.
pub fn visible(text: &str) -> Cow<'_, str> {
    let mut chars = text.char_indices().peekable();
    let mut out: Option<String> = None;
    while let Some((i, c)) = chars.next() {
        let risky = steers(c) && !(c == '\r' && chars.peek().is_some_and(|&(_, n)| n == '\n'));
        match (&mut out, risky) {
            (None, false) => {}
            (None, true) => {
                let mut s = String::with_capacity(text.len() + 8);
                s.push_str(&text[..i]);
                push_escaped(&mut s, c);
                out = Some(s);
            }
            (Some(s), true) => push_escaped(s, c),
            (Some(s), false) => s.push(c),
        }
    }
    out.map_or(Cow::Borrowed(text), Cow::Owned)
}

fn push_escaped(out: &mut String, c: char) {
    use fmt::Write;
    let _ = write!(out, "\\u{{{:x}}}", c as u32);
}

/// Whether a terminal may act on `c` instead of showing it.
fn steers(c: char) -> bool {
    match c {
        '\n' | '\t' => false,
        // C0 controls (ESC, BEL, backspace, carriage return...), DEL and C1 controls
        // (CSI U+009B starts a sequence on its own in some terminals).
        '\0'..='\x1f' | '\x7f'..='\u{9f}' => true,
        // Bidirectional overrides, embeddings and isolates, and the marks: they reorder
        // what follows them on the line.
        '\u{061c}'
        | '\u{200e}'
        | '\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}' => true,
        // Line and paragraph separators: some terminals break the line on them.
        '\u{2028}' | '\u{2029}' => true,
        _ => false,
    }
}

/// Terminal styling, off unless stdout is a terminal and NO_COLOR is unset.
#[derive(Clone, Copy, Debug, Default)]
pub struct Style {
    pub color: bool,
}

/// How a piece of the report is painted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paint {
    Bold,
    Green,
    Yellow,
    Red,
    Dim,
}

impl Paint {
    fn code(self) -> &'static str {
        match self {
            Paint::Bold => "1",
            Paint::Green => "1;32",
            Paint::Yellow => "1;33",
            Paint::Red => "1;31",
            Paint::Dim => "2",
        }
    }
}

/// The text being written for a terminal. Everything written through it, with `write!`
/// or [`Out::paint`], passes [`visible`]; only the painting itself adds escape codes. So
/// no field of a report, present or future, reaches the terminal raw.
pub struct Out {
    text: String,
    style: Style,
}

impl Out {
    pub fn new(style: Style) -> Out {
        Out {
            text: String::new(),
            style,
        }
    }

    /// Writes `text` in `paint` (plain when colour is off).
    pub fn paint(&mut self, paint: Paint, text: &str) {
        if self.style.color {
            self.text.push_str("\x1b[");
            self.text.push_str(paint.code());
            self.text.push('m');
            self.text.push_str(&visible(text));
            self.text.push_str("\x1b[0m");
        } else {
            self.text.push_str(&visible(text));
        }
    }

    pub fn push_newline(&mut self) {
        self.text.push('\n');
    }

    pub fn finish(self) -> String {
        self.text
    }
}

impl fmt::Write for Out {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.text.push_str(&visible(s));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write;

    #[test]
    fn controls_become_visible_escapes_and_plain_text_is_borrowed() {
        assert!(matches!(visible("Canberra\n\tok"), Cow::Borrowed(_)));
        assert!(matches!(visible("line\r\nnext"), Cow::Borrowed(_)));
        assert_eq!(visible("\x1b[2J\x07"), "\\u{1b}[2J\\u{7}");
        assert_eq!(visible("fake\r✔ FINAL"), "fake\\u{d}✔ FINAL");
        assert_eq!(visible("a\u{9b}31m\u{7f}"), "a\\u{9b}31m\\u{7f}");
        assert_eq!(
            visible("abc\u{202e}fed\u{2066}"),
            "abc\\u{202e}fed\\u{2066}"
        );
        assert_eq!(visible("end\r"), "end\\u{d}");
        // Escaping twice changes nothing: the escapes are plain ASCII.
        let once = visible("\x1b]0;title\x07").into_owned();
        assert_eq!(visible(&once), once);
    }

    #[test]
    fn only_painting_adds_escape_codes() {
        let mut out = Out::new(Style { color: true });
        out.paint(Paint::Green, "✔ FINAL\x1b[0m");
        let name = "\x1b[31mred";
        let _ = write!(out, " {name}");
        assert_eq!(
            out.finish(),
            "\x1b[1;32m✔ FINAL\\u{1b}[0m\x1b[0m \\u{1b}[31mred"
        );
    }
}
