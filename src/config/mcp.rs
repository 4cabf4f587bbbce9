//! `kind = "mcp"` provider tables: an MCP server (a command or a URL) and its tool.

use serde_json::{Map, Value};

use super::{Env, ProviderSection, Result, SeatSpec, Settings};
use crate::error::ConfigError;
use crate::provider::mcp::{Server, Tool};
use crate::provider::{Provider, Secret};

impl Settings {
    /// The same settings with a new session for every MCP seat, for another run (each
    /// item of an `eval`: an agent's session may remember the item before); None when no
    /// seat keeps a session.
    pub fn with_new_sessions(&self) -> Option<Settings> {
        let keeps_one = |s: &SeatSpec| matches!(s.provider, Provider::Mcp(_));
        if !self.seats.iter().chain(&self.synthesizer).any(keeps_one) {
            return None;
        }
        let mut settings = self.clone();
        for seat in settings
            .seats
            .iter_mut()
            .chain(settings.synthesizer.as_mut())
        {
            seat.provider = seat.provider.for_seat();
        }
        Some(settings)
    }
}

/// The keys only an MCP provider takes.
const MCP_KEYS: [&str; 6] = [
    "url",
    "tool",
    "prompt_argument",
    "system_argument",
    "arguments",
    "result_pointer",
];

/// The MCP-only keys set in a table of another kind: an error, so that a typo in
/// `kind` does not quietly turn an agent into something else.
pub(super) fn reject_mcp_keys(name: &str, kind: &str, section: &ProviderSection) -> Result<()> {
    let set = [
        section.url.is_some(),
        section.tool.is_some(),
        section.prompt_argument.is_some(),
        section.system_argument.is_some(),
        section.arguments.is_some(),
        section.result_pointer.is_some(),
    ];
    match MCP_KEYS.iter().zip(set).find(|(_, set)| *set) {
        Some((key, _)) => Err(ConfigError::new(format!(
            "[providers.{name}] {key} applies to kind = \"mcp\" only (this provider is kind = \"{kind}\")"
        ))),
        None => Ok(()),
    }
}

/// An MCP seat's provider, model (the tool's name unless the seat names one), key
/// variable and why it cannot be called (its key variable is not set).
pub(super) fn resolve(
    name: &str,
    model: Option<String>,
    origin: &str,
    section: Option<&ProviderSection>,
    env: &Env,
) -> Result<(Provider, String, Option<String>, Option<String>)> {
    let empty = ProviderSection::default();
    let section = section.unwrap_or(&empty);
    let error = |message: String| ConfigError::new(format!("[providers.{name}] {message}"));
    for (key, set) in [
        ("base_url", section.base_url.is_some()),
        ("stream", section.stream.is_some()),
        ("max_tokens_field", section.max_tokens_field.is_some()),
        ("api_version", section.api_version.is_some()),
    ] {
        if set {
            let hint = if key == "base_url" {
                ": a server at a URL is url = \"https://...\""
            } else {
                ""
            };
            return Err(error(format!(
                "{key} does not apply to kind = \"mcp\"{hint}"
            )));
        }
    }
    let server = match (&section.command, &section.url) {
        (Some(_), Some(_)) => {
            return Err(error(
                "kind = \"mcp\" takes command = [...] (a server it starts) or url = \"...\" (a server it reaches), not both".to_string(),
            ));
        }
        (Some(argv), None) if argv.first().is_some_and(|p| !p.trim().is_empty()) => {
            Server::Command(argv.clone())
        }
        (None, Some(url)) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(error(format!(
                    "url `{url}` must start with http:// or https://"
                )));
            }
            Server::Url(url.clone())
        }
        _ => {
            return Err(error(
                "kind = \"mcp\" needs command = [\"program\", \"arg\", ...] (a server speaking MCP on standard input and output) or url = \"https://...\" (a Streamable HTTP server)".to_string(),
            ));
        }
    };
    if matches!(server, Server::Command(_))
        && (section.api_key_env.is_some() || !section.headers.is_empty())
    {
        let key = if section.api_key_env.is_some() {
            "api_key_env"
        } else {
            "headers"
        };
        return Err(error(format!(
            "{key} applies to a server at a url (a server started as a command gets the environment)"
        )));
    }
    let tool = section
        .tool
        .clone()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| {
            error("kind = \"mcp\" needs tool = \"NAME\" (the tool that answers the prompt)".into())
        })?;
    let prompt_argument = section
        .prompt_argument
        .clone()
        .unwrap_or_else(|| "prompt".to_string());
    if prompt_argument.trim().is_empty() {
        return Err(error(
            "prompt_argument is empty: name the tool's argument that takes the prompt (default \"prompt\")".into(),
        ));
    }
    let system_argument = section.system_argument.clone();
    match &system_argument {
        Some(s) if s.trim().is_empty() => {
            return Err(error(
                "system_argument is empty: name the tool's argument that takes the system prompt, or leave it out".into(),
            ));
        }
        Some(s) if *s == prompt_argument => {
            return Err(error(format!(
                "system_argument and prompt_argument are both `{s}`: the system prompt goes before the prompt when system_argument is left out"
            )));
        }
        _ => {}
    }
    let arguments: Map<String, Value> = match &section.arguments {
        Some(table) => serde_json::to_value(table)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .ok_or_else(|| error("arguments cannot be sent as JSON".into()))?,
        None => Map::new(),
    };
    for taken in std::iter::once(&prompt_argument).chain(&system_argument) {
        if arguments.contains_key(taken) {
            return Err(error(format!(
                "arguments.{taken} is where the prompt goes: remove it from arguments"
            )));
        }
    }
    if let Some(pointer) = &section.result_pointer
        && !pointer.starts_with('/')
    {
        return Err(error(format!(
            "result_pointer `{pointer}` is not a JSON pointer: start it with / (\"/synthesis\" is the field synthesis)"
        )));
    }
    let key_env = section.api_key_env.clone();
    let key = key_env
        .as_deref()
        .and_then(|var| env.get(var))
        .map(Secret::new);
    let missing_key = match (&key_env, &key) {
        (Some(var), None) => Some(format!(
            "{origin}: provider `{name}` needs a token: set the environment variable {var}{} (or change api_key_env in [providers.{name}])",
            if env.is_not_utf8(var) {
                format!(" ({var} is set but not UTF-8 text)")
            } else {
                String::new()
            }
        )),
        _ => None,
    };
    let mut provider = Tool::new(name.to_string(), server, tool.clone());
    provider.prompt_argument = prompt_argument;
    provider.system_argument = system_argument;
    provider.arguments = arguments;
    provider.headers = section.headers.clone().into_iter().collect();
    provider.key = key;
    provider.result_pointer = section.result_pointer.clone();
    Ok((
        Provider::Mcp(provider),
        model.unwrap_or(tool),
        key_env,
        missing_key,
    ))
}
