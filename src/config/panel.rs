//! The panel: which seats answer, each with its provider, endpoint, model and key, from
//! `-m` flags, `[[participants]]` or the keys that are set.

use std::collections::HashMap;
use std::path::Path;

use super::limits::{Source, range};
use super::{Env, FileConfig, ProviderSection, Result, SeatSpec};
use crate::cli::AskArgs;
use crate::error::ConfigError;
use crate::provider::command::Program;
use crate::provider::mock::{Script, Step};
use crate::provider::ollama;
use crate::provider::openai::{Dialect, MaxTokensField};
use crate::provider::pricing::{self, Price};
use crate::provider::vendors::{self, Vendor};
use crate::provider::{Endpoint, Protocol, Provider, Secret};

/// One seat request before its provider is resolved.
struct SeatRequest {
    provider: String,
    model: Option<String>,
    name: Option<String>,
    count: usize,
    temperature: Option<f64>,
    weight: f64,
    system: Option<String>,
    max_tokens: Option<u32>,
    script: Option<Vec<Step>>,
    sleep: bool,
    price: Option<Price>,
    /// Where the seat was asked for, for messages.
    origin: String,
}

impl SeatRequest {
    /// A seat of `provider` with every per-seat setting left to the defaults (what `-m`,
    /// `--synthesize` and a key found in the environment ask for).
    fn plain(provider: String, model: Option<String>, count: usize, origin: String) -> Self {
        SeatRequest {
            provider,
            model,
            name: None,
            count,
            temperature: None,
            weight: 1.0,
            system: None,
            max_tokens: None,
            script: None,
            sleep: false,
            price: None,
            origin,
        }
    }
}

/// The `--synthesize PROVIDER:MODEL` seat.
pub(super) fn resolve_synthesizer(
    flag: &str,
    args: &AskArgs,
    file: &FileConfig,
    env: &Env,
) -> Result<SeatSpec> {
    let (provider, model, count) =
        parse_model_flag(flag).map_err(|e| ConfigError::new(format!("--synthesize: {e}")))?;
    if count != 1 {
        return Err(ConfigError::new(format!(
            "--synthesize {flag}: one synthesizer, without @N"
        )));
    }
    let req = SeatRequest::plain(provider.clone(), model, 1, format!("--synthesize {flag}"));
    let (provider_value, model, key_env, missing_key) = resolve_provider(&req, args, file, env)?;
    let price = seat_price(&req, &model, file);
    Ok(SeatSpec {
        name: format!("{provider}:{model}"),
        provider_name: provider,
        model,
        provider: provider_value,
        temperature: args.calls.temperature,
        max_tokens: args.calls.max_tokens,
        weight: 1.0,
        system: None,
        key_env,
        max_concurrency: None,
        price,
        missing_key,
    })
}

/// A seat's price: its `[[participants]]` entry's, else its provider section's, else the
/// bundled table's for that provider and model.
fn seat_price(req: &SeatRequest, model: &str, file: &FileConfig) -> Option<Price> {
    req.price
        .or_else(|| file.providers.get(&req.provider).and_then(|s| s.price))
        .or_else(|| pricing::lookup(&req.provider, model))
}

/// Parses `PROVIDER:MODEL[@N]`, splitting on the first colon only.
pub fn parse_model_flag(flag: &str) -> Result<(String, Option<String>, usize)> {
    let (spec, count) = match flag.rsplit_once('@') {
        Some((spec, n)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => {
            let count: usize = n
                .parse()
                .map_err(|_| ConfigError::new(format!("-m {flag}: @{n} is too large")))?;
            if count == 0 || count > 64 {
                return Err(ConfigError::new(format!(
                    "-m {flag}: @N must be between 1 and 64"
                )));
            }
            (spec, count)
        }
        _ => (flag, 1),
    };
    let (provider, model) = match spec.split_once(':') {
        Some((p, m)) => (p, Some(m.to_string()).filter(|m| !m.is_empty())),
        None => (spec, None),
    };
    if provider.is_empty() {
        return Err(ConfigError::new(format!(
            "-m {flag}: expected PROVIDER:MODEL, e.g. -m openai:gpt-4o-mini"
        )));
    }
    Ok((provider.to_string(), model, count))
}

pub(super) fn resolve_panel(
    args: &AskArgs,
    file: &FileConfig,
    config_path: Option<&Path>,
    env: &Env,
) -> Result<Vec<SeatSpec>> {
    let requests: Vec<SeatRequest> = if !args.models.is_empty() {
        args.models
            .iter()
            .map(|flag| {
                let (provider, model, count) = parse_model_flag(flag)?;
                Ok(SeatRequest::plain(
                    provider,
                    model,
                    count,
                    format!("-m {flag}"),
                ))
            })
            .collect::<Result<_>>()?
    } else if !file.participants.is_empty() {
        file.participants
            .iter()
            .enumerate()
            .map(|(i, p)| SeatRequest {
                provider: p.provider.clone(),
                model: p.model.clone(),
                name: p.name.clone(),
                count: p.count.unwrap_or(1),
                temperature: p.temperature,
                weight: p.weight.unwrap_or(1.0),
                system: p.system.clone(),
                max_tokens: p.max_tokens,
                script: p.script.clone(),
                sleep: p.sleep,
                price: p.price,
                origin: format!("[[participants]] #{}", i + 1),
            })
            .collect()
    } else {
        auto_panel(env)
    };
    if requests.is_empty()
        && let Some(path) = config_path
    {
        return Err(ConfigError::new(format!(
            "config file {} defines no participants: add [[participants]] entries \
(see providers.example.toml) or pass -m PROVIDER:MODEL",
            path.display()
        )));
    }
    if requests.is_empty() {
        return Err(ConfigError::new(
            "no participants: pass -m PROVIDER:MODEL (e.g. -m openai:gpt-4o-mini with OPENAI_API_KEY set), \
set an API key variable such as OPENAI_API_KEY or GROQ_API_KEY, or write a config file \
(see providers.example.toml; try --config examples/demo.toml for an offline demo)",
        ));
    }

    let mut seats: Vec<SeatSpec> = Vec::new();
    // Per seat: where its name was given (None when the name is a default).
    let mut named_by: Vec<Option<String>> = Vec::new();
    for req in requests {
        // Only `[[participants]]` entries set these; -m seats take the defaults.
        let key = |name: &str| Source::Key(format!("{} {name}", req.origin));
        range::COUNT.check_count(&key("count"), req.count)?;
        range::WEIGHT.check(&key("weight"), req.weight)?;
        if let Some(t) = req.temperature {
            range::TEMPERATURE.check(&key("temperature"), t)?;
        }
        if let Some(n) = req.max_tokens {
            range::MAX_TOKENS.check(&key("max_tokens"), n)?;
        }
        for (i, step) in req.script.iter().flatten().enumerate() {
            range::MOCK_MS.check(&key(&format!("script[{i}].ms")), step.ms)?;
        }
        if let Some(price) = req.price {
            check_price(&key("price"), price)?;
        }
        let temperature = req.temperature.or(args.calls.temperature);
        let (provider, model, key_env, missing_key) = resolve_provider(&req, args, file, env)?;
        let price = seat_price(&req, &model, file);
        let base = req
            .name
            .clone()
            .unwrap_or_else(|| format!("{}:{}", req.provider, model));
        for copy in 0..req.count {
            // Default names are numbered once the whole panel is known.
            let name = if copy == 0 || req.name.is_none() {
                base.clone()
            } else {
                format!("{base}#{}", copy + 1)
            };
            named_by.push(req.name.as_ref().map(|_| req.origin.clone()));
            seats.push(SeatSpec {
                name,
                provider_name: req.provider.clone(),
                model: model.clone(),
                // One session per seat for MCP seats.
                provider: provider.for_seat(),
                temperature,
                max_tokens: req.max_tokens.or(args.calls.max_tokens),
                weight: req.weight,
                system: req.system.clone(),
                key_env: key_env.clone(),
                max_concurrency: file
                    .providers
                    .get(&req.provider)
                    .and_then(|s| s.max_concurrency),
                price,
                missing_key: missing_key.clone(),
            });
        }
    }
    dedupe_names(&mut seats, &named_by)?;
    Ok(seats)
}

/// Makes seat names unique. A name given twice (`name = ...` in two `[[participants]]`
/// entries) is an error naming both entries: the user meant two seats and must say which is
/// which. Default names (`provider:model`) never take a given name and are numbered
/// `name#2`, `name#3`... when taken. `named_by[i]` is where seat `i`'s name was given.
fn dedupe_names(seats: &mut [SeatSpec], named_by: &[Option<String>]) -> Result<()> {
    let mut taken: HashMap<String, Option<&str>> = HashMap::new();
    for (seat, origin) in seats.iter().zip(named_by) {
        let Some(origin) = origin else { continue };
        if let Some(Some(first)) = taken.insert(seat.name.clone(), Some(origin)) {
            return Err(ConfigError::new(format!(
                "{first} and {origin} are both named `{}`: give each participant its own name",
                seat.name
            )));
        }
    }
    for (seat, origin) in seats.iter_mut().zip(named_by) {
        if origin.is_some() {
            continue;
        }
        let base = std::mem::take(&mut seat.name);
        let mut name = base.clone();
        let mut n = 2;
        while taken.contains_key(&name) {
            name = format!("{base}#{n}");
            n += 1;
        }
        taken.insert(name.clone(), None);
        seat.name = name;
    }
    Ok(())
}

/// Every built-in hosted provider whose key is set, plus Ollama when OLLAMA_HOST is set.
/// Azure is left out: its model names are the user's own deployment names.
fn auto_panel(env: &Env) -> Vec<SeatRequest> {
    vendors::VENDORS
        .iter()
        .filter_map(|v| {
            let var = if v.key_required && v.kind != "azure" {
                v.key_envs
                    .iter()
                    .copied()
                    .find(|var| env.get(var).is_some())?
            } else if v.name == "ollama" && env.get("OLLAMA_HOST").is_some() {
                "OLLAMA_HOST"
            } else {
                return None;
            };
            Some(SeatRequest::plain(
                v.name.to_string(),
                None,
                1,
                format!("the {var} variable"),
            ))
        })
        .collect()
}

/// The provider names a seat may use, each once, in alphabetical order.
fn known_names(file: &FileConfig) -> String {
    let mut names: Vec<&str> = file.providers.keys().map(String::as_str).collect();
    names.extend(vendors::VENDORS.iter().map(|v| v.name));
    names.sort_unstable();
    names.dedup();
    names.join(", ")
}

const KINDS: &str = "\"openai\", \"azure\", \"anthropic\", \"gemini\", \"ollama\", \"command\", \"mcp\" or \"mock\"";

/// A seat's provider, model, key variable, and why it cannot be called (a missing key).
type Resolved = (Provider, String, Option<String>, Option<String>);

/// Input and output prices per million tokens.
fn check_price(source: &Source, price: Price) -> Result<()> {
    let input = Source::Key(format!("{source}.input"));
    let output = Source::Key(format!("{source}.output"));
    range::PRICE.check(&input, price.input)?;
    range::PRICE.check(&output, price.output)?;
    Ok(())
}

fn resolve_provider(
    req: &SeatRequest,
    args: &AskArgs,
    file: &FileConfig,
    env: &Env,
) -> Result<Resolved> {
    let section = file.providers.get(&req.provider);
    let vendor: Option<&Vendor> = vendors::find(&req.provider);
    if section.is_none() && vendor.is_none() {
        return Err(ConfigError::new(format!(
            "{}: unknown provider `{}`: use one of {} or define [providers.{}] in the config",
            req.origin,
            req.provider,
            known_names(file),
            req.provider
        )));
    }
    let kind = section
        .and_then(|s| s.kind.clone())
        .or_else(|| vendor.map(|v| v.kind.to_string()))
        .ok_or_else(|| {
            ConfigError::new(format!("[providers.{}] needs kind = {KINDS}", req.provider))
        })?;
    if let Some(section) = section {
        let key = |name: &str| Source::Key(format!("[providers.{}] {name}", req.provider));
        if let Some(n) = section.max_concurrency {
            range::MAX_CONCURRENCY.check_count(&key("max_concurrency"), n)?;
        }
        if let Some(price) = section.price {
            check_price(&key("price"), price)?;
        }
        if kind != "mcp" {
            super::mcp::reject_mcp_keys(&req.provider, &kind, section)?;
        }
    }
    match kind.as_str() {
        "mock" => {
            let steps = match (&req.script, &req.model) {
                (Some(script), _) if !script.is_empty() => script.clone(),
                (Some(_), _) => {
                    return Err(ConfigError::new(format!(
                        "{}: the mock script is empty",
                        req.origin
                    )));
                }
                (None, Some(text)) => vec![Step::answer(text.clone())],
                (None, None) => {
                    return Err(ConfigError::new(format!(
                        "{}: a mock seat needs a script = [...] or a model (the text it answers)",
                        req.origin
                    )));
                }
            };
            let model = req.model.clone().unwrap_or_else(|| "script".to_string());
            Ok((
                Provider::Mock(Script {
                    steps,
                    sleep: req.sleep,
                }),
                model,
                None,
                None,
            ))
        }
        "command" => {
            let argv = section
                .and_then(|s| s.command.clone())
                .filter(|argv| argv.first().is_some_and(|p| !p.trim().is_empty()))
                .ok_or_else(|| {
                    ConfigError::new(format!(
                        "[providers.{}] kind = \"command\" needs command = [\"program\", \"arg\", ...] \
(an argument containing {{prompt}} receives the prompt; otherwise it goes to standard input)",
                        req.provider
                    ))
                })?;
            let model = req.model.clone().unwrap_or_else(|| "default".to_string());
            Ok((
                Provider::Command(Program {
                    name: req.provider.clone(),
                    argv,
                }),
                model,
                None,
                None,
            ))
        }
        "mcp" => super::mcp::resolve(&req.provider, req.model.clone(), &req.origin, section, env),
        "openai" | "azure" | "anthropic" | "gemini" | "ollama" => {
            resolve_http(req, args, section, vendor, &kind, env)
        }
        other => Err(ConfigError::new(format!(
            "[providers.{}] kind `{other}` is not supported: use {KINDS}",
            req.provider
        ))),
    }
}

/// An HTTP provider: its endpoint, model and key.
fn resolve_http(
    req: &SeatRequest,
    args: &AskArgs,
    section: Option<&ProviderSection>,
    vendor: Option<&Vendor>,
    kind: &str,
    env: &Env,
) -> Result<Resolved> {
    let name = &req.provider;
    // Defaults come from the built-in of that name when it speaks this kind, else from
    // the built-in named after the kind (`[providers.claude] kind = "anthropic"`).
    let defaults = vendor
        .filter(|v| v.kind == kind)
        .or_else(|| vendors::find(kind).filter(|_| kind != "openai"));
    let model = req
        .model
        .clone()
        .or_else(|| defaults.map(|v| v.default_model.to_string()))
        .ok_or_else(|| {
            ConfigError::new(format!("{}: no model given: use {name}:MODEL", req.origin))
        })?;
    let configured_url = section.and_then(|s| s.base_url.clone());
    let env_url = match kind {
        "ollama" => env.get("OLLAMA_HOST").map(ollama::host_url),
        "azure" => env.get("AZURE_OPENAI_ENDPOINT").map(str::to_string),
        "anthropic" => env.get("ANTHROPIC_BASE_URL").map(str::to_string),
        _ => None,
    };
    let base_url = configured_url
        .clone()
        .or(env_url)
        .or_else(|| {
            defaults
                .map(|v| v.base_url.to_string())
                .filter(|u| !u.is_empty())
        })
        .ok_or_else(|| {
            if kind == "azure" {
                ConfigError::new(format!(
                    "{}: provider `{name}` needs the resource URL: set AZURE_OPENAI_ENDPOINT \
(e.g. https://RESOURCE.openai.azure.com) or base_url in [providers.{name}]",
                    req.origin
                ))
            } else {
                ConfigError::new(format!("[providers.{name}] needs base_url"))
            }
        })?;
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(ConfigError::new(format!(
            "[providers.{name}] base_url `{base_url}` must start with http:// or https://"
        )));
    }

    let explicit_env = section.and_then(|s| s.api_key_env.clone());
    let candidates: Vec<String> = match &explicit_env {
        Some(var) => vec![var.clone()],
        None => defaults
            .map(|v| v.key_envs.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default(),
    };
    let found = candidates
        .iter()
        .find_map(|var| env.get(var).map(|value| (var.clone(), Secret::new(value))));
    let key_env = found
        .as_ref()
        .map(|(var, _)| var.clone())
        .or_else(|| candidates.first().cloned());
    let key = found.map(|(_, key)| key);
    // A hosted vendor needs its key unless its URL was pointed elsewhere (a proxy, a local server).
    let required = explicit_env.is_some()
        || (defaults.is_some_and(|v| v.key_required) && configured_url.is_none());
    let missing_key = (key.is_none() && required && !candidates.is_empty()).then(|| {
        let unusable: Vec<&str> = candidates
            .iter()
            .map(String::as_str)
            .filter(|var| env.is_not_utf8(var))
            .collect();
        let why = if unusable.is_empty() {
            String::new()
        } else {
            format!(" ({} is set but not UTF-8 text)", unusable.join(", "))
        };
        format!(
            "{}: provider `{name}` needs an API key: set the environment variable {}{why} (or change api_key_env in [providers.{name}])",
            req.origin,
            candidates.join(" or ")
        )
    });

    let stream = args.calls.stream || section.and_then(|s| s.stream).unwrap_or(false);
    let mut headers: Vec<(String, String)> = section
        .map(|s| s.headers.clone().into_iter().collect())
        .unwrap_or_default();
    // OpenAI's SDK sends the organization and project when these are set.
    if defaults.is_some_and(|v| v.name == "openai") {
        for (var, header) in [
            ("OPENAI_ORG_ID", "OpenAI-Organization"),
            ("OPENAI_PROJECT_ID", "OpenAI-Project"),
        ] {
            if let Some(value) = env.get(var)
                && !headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(header))
            {
                headers.push((header.to_string(), value.to_string()));
            }
        }
    }
    let (base_url, protocol) = match kind {
        "anthropic" => (base_url, Protocol::Anthropic),
        "gemini" => (base_url, Protocol::Gemini),
        "ollama" => (base_url, Protocol::Ollama),
        _ => {
            let (base_url, mut dialect) = if kind == "azure" {
                let api_version = section
                    .and_then(|s| s.api_version.clone())
                    .or_else(|| env.get("OPENAI_API_VERSION").map(str::to_string));
                Dialect::azure(&base_url, api_version)
            } else {
                (base_url, Dialect::default())
            };
            // OpenAI itself (also behind a proxy) and Azure take the current field.
            let official = base_url.contains("api.openai.com")
                || defaults.is_some_and(|v| v.max_completion_tokens);
            dialect.max_tokens_field = section.and_then(|s| s.max_tokens_field).unwrap_or(
                if official || kind == "azure" {
                    MaxTokensField::MaxCompletionTokens
                } else {
                    MaxTokensField::MaxTokens
                },
            );
            // Mistral names its seed field differently and refuses unknown fields.
            if base_url.contains("api.mistral.ai") || defaults.is_some_and(|v| v.name == "mistral")
            {
                dialect.seed_field = "random_seed";
            }
            (base_url, Protocol::OpenAi(dialect))
        }
    };
    let endpoint = Endpoint {
        name: name.clone(),
        base_url,
        key,
        stream,
        headers,
        protocol,
    };
    // The key goes in its own header: a configured header of the same name would be sent
    // next to it, and which of the two a server reads is anyone's guess.
    let key_header = endpoint.key_header_name();
    if endpoint.key.is_some()
        && let Some((h, _)) = endpoint
            .headers
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(key_header))
    {
        return Err(ConfigError::new(format!(
            "[providers.{name}] headers.{h}: the API key is sent in the {key_header} header already; \
             remove this header, or the key (api_key_env) to send the header as written"
        )));
    }
    Ok((Provider::Http(endpoint), model, key_env, missing_key))
}
