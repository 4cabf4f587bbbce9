//! Texts shared by every layer: an answer or prompt held once and shared ([`Text`]), a
//! prompt that may be written out lazily from shared parts ([`Prompt`]). A leaf module:
//! it depends on nothing else in the crate.

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::Serialize;

/// A text shared rather than copied: an answer held by the state, the trace and the
/// decision at once, or a prompt that a round sends to every seat. Made from a `String`
/// without copying it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Text(std::sync::Arc<String>);

impl Text {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<String> for Text {
    fn from(text: String) -> Text {
        Text(std::sync::Arc::new(text))
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Text {
        Text::from(text.to_string())
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.0.as_str(), f)
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// A prompt: one shared text, or a refinement prompt held as the parts it shares with the
/// round's other prompts (the question, the quoted answers), which are stored once
/// however many prompts show them. Reading a refinement prompt as one `&str` writes it
/// out the first time; writing it (`Display`, `Serialize`) streams its parts without
/// joining them.
#[derive(Clone)]
pub struct Prompt(Repr);

#[derive(Clone)]
enum Repr {
    Text(Text),
    Parts(Arc<Lazy<dyn PromptParts>>),
}

/// Parts, and the prompt they make once it has been written out.
struct Lazy<P: ?Sized> {
    joined: OnceLock<String>,
    parts: P,
}

/// A prompt written out from shared parts on demand (a refinement prompt: the round's
/// question and quoted answers, and which of them one seat is shown).
pub trait PromptParts: Send + Sync {
    /// Writes the whole prompt.
    fn write_to(&self, out: &mut dyn fmt::Write) -> fmt::Result;
    /// Its length in bytes, without writing it.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Prompt {
    /// The prompt as one string.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Text(text) => text,
            Repr::Parts(r) => r.joined.get_or_init(|| {
                let mut out = String::with_capacity(r.parts.len());
                // Writing to a String cannot fail.
                let _ = r.parts.write_to(&mut out);
                out
            }),
        }
    }

    /// Its length in bytes, without writing it out.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Text(text) => text.len(),
            Repr::Parts(r) => r.parts.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Prompt {
    /// A prompt written out from `parts` when first read.
    pub fn from_parts(parts: impl PromptParts + 'static) -> Prompt {
        Prompt(Repr::Parts(Arc::new(Lazy {
            joined: OnceLock::new(),
            parts,
        })))
    }
}

impl From<Text> for Prompt {
    fn from(text: Text) -> Prompt {
        Prompt(Repr::Text(text))
    }
}

impl From<String> for Prompt {
    fn from(text: String) -> Prompt {
        Prompt::from(Text::from(text))
    }
}

impl From<&str> for Prompt {
    fn from(text: &str) -> Prompt {
        Prompt::from(Text::from(text))
    }
}

impl std::ops::Deref for Prompt {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Prompt {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Prompt {
    fn eq(&self, other: &Prompt) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<str> for Prompt {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Prompt {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Prompt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Prompt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Text(text) => f.write_str(text),
            Repr::Parts(r) => match r.joined.get() {
                Some(joined) => f.write_str(joined),
                None => r.parts.write_to(f),
            },
        }
    }
}

impl serde::Serialize for Prompt {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Repr::Text(text) => serializer.serialize_str(text),
            Repr::Parts(r) => match r.joined.get() {
                Some(joined) => serializer.serialize_str(joined),
                // A JSON writer escapes the parts straight into its output.
                None => serializer.collect_str(self),
            },
        }
    }
}
