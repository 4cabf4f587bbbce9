//! The TOML schema, where the file is found, and how flags, file and defaults combine
//! (flags > file > defaults) into [`Settings`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::AskArgs;
use crate::consensus::{Params, Seat, StrategyKind, Text, default_quorum};
use crate::error::ConfigError;
use crate::provider::command::Program;
use crate::provider::http::Policy;
use crate::provider::mock::{Script, Step};
use crate::provider::openai::{Endpoint, MaxTokensField};
use crate::provider::pricing::{self, Price};
use crate::provider::vendors::{self, Vendor};
use crate::provider::{Provider, Secret};
use crate::provider::{anthropic, gemini, ollama};
use crate::similarity::{AnswerMode, Metric};

type Result<T> = std::result::Result<T, ConfigError>;

/// The environment, captured once so that resolution is a pure function of its inputs.
#[derive(Clone, Debug, Default)]
pub struct Env(HashMap<String, String>);

impl Env {
    pub fn from_process() -> Env {
        Env(std::env::vars().collect())
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Env {
        Env(pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// A variable's value; empty counts as unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub consensus: ConsensusSection,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderSection>,
    #[serde(default)]
    pub participants: Vec<ParticipantSection>,
}

/// `[consensus]`: run defaults that flags override.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusSection {
    pub strategy: Option<String>,
    pub rounds: Option<usize>,
    pub k: Option<usize>,
    pub alpha: Option<f64>,
    pub beta_1: Option<f64>,
    pub beta_2: Option<f64>,
    pub seed: Option<u64>,
    pub quorum: Option<usize>,
    pub answer: Option<String>,
    pub similarity: Option<String>,
    pub tolerance: Option<f64>,
    pub quorum_share: Option<String>,
    pub rule: Option<String>,
    pub faults: Option<usize>,
    pub synthesize: Option<String>,
    pub confidence: Option<bool>,
    pub system: Option<String>,
    /// Seconds per call.
    pub timeout: Option<f64>,
    pub retries: Option<u32>,
    /// Seconds the whole run may take.
    pub deadline: Option<f64>,
    /// Seconds after which a round closes once the quorum has answered.
    pub round_timeout: Option<f64>,
    /// USD the run may cost at most (`--max-cost`).
    pub max_cost: Option<f64>,
}

/// `[providers.NAME]`: a wire protocol, an endpoint and where its key comes from.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
    pub kind: Option<String>,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    pub stream: Option<bool>,
    pub max_tokens_field: Option<MaxTokensField>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Azure OpenAI: the dated API version (without it, the `/openai/v1` API is used).
    pub api_version: Option<String>,
    /// Calls to this provider in flight at once, across all of its seats.
    pub max_concurrency: Option<usize>,
    /// kind = "command": the program and its arguments (`{prompt}`, `{system}`, `{model}`).
    pub command: Option<Vec<String>>,
    /// USD per million tokens, for every seat of this provider.
    pub price: Option<Price>,
}

/// `[[participants]]`: one or more seats.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantSection {
    pub provider: String,
    pub model: Option<String>,
    pub name: Option<String>,
    pub count: Option<usize>,
    pub temperature: Option<f64>,
    pub weight: Option<f64>,
    pub system: Option<String>,
    pub max_tokens: Option<u32>,
    pub script: Option<Vec<Step>>,
    #[serde(default)]
    pub sleep: bool,
    /// USD per million tokens for these seats (over the provider's and the bundled table).
    pub price: Option<Price>,
}

/// A resolved seat: who answers and how to reach it.
#[derive(Clone, Debug)]
pub struct SeatSpec {
    pub name: String,
    pub provider_name: String,
    pub model: String,
    pub provider: Provider,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    pub weight: f64,
    pub system: Option<String>,
    /// The variable the key is read from, when there is one.
    pub key_env: Option<String>,
    /// Calls of this seat's provider allowed in flight at once (`max_concurrency`).
    pub max_concurrency: Option<usize>,
    /// USD per million tokens; None when unknown.
    pub price: Option<Price>,
}

impl SeatSpec {
    pub fn engine_seat(&self) -> Seat {
        Seat {
            name: Text::from(self.name.as_str()),
            weight: self.weight,
            system: self.system.clone(),
        }
    }
}

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct Settings {
    pub params: Params,
    /// Whether the seed was given (otherwise it was drawn and is reported).
    pub seed_given: bool,
    pub seats: Vec<SeatSpec>,
    pub policy: Policy,
    pub config_path: Option<PathBuf>,
    /// USD the run may cost at most; every seat then has a price.
    pub max_cost: Option<f64>,
    /// `--synthesize`: the model that writes the synthesis.
    pub synthesizer: Option<SeatSpec>,
}

/// Finds the config file: the flag, then $LLM_CONSENSUS_CONFIG, then the XDG location.
pub fn discover(flag: Option<&Path>, env: &Env) -> Result<Option<PathBuf>> {
    if let Some(path) = flag {
        if !path.is_file() {
            return Err(ConfigError::new(format!(
                "config file {} not found (given with --config)",
                path.display()
            )));
        }
        return Ok(Some(path.to_path_buf()));
    }
    if let Some(path) = env.get("LLM_CONSENSUS_CONFIG") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(ConfigError::new(format!(
                "config file {} not found (named by $LLM_CONSENSUS_CONFIG)",
                path.display()
            )));
        }
        return Ok(Some(path));
    }
    let base = match (env.get("XDG_CONFIG_HOME"), env.get("HOME")) {
        (Some(xdg), _) => PathBuf::from(xdg),
        (None, Some(home)) => Path::new(home).join(".config"),
        (None, None) => return Ok(None),
    };
    let path = base.join("llm-consensus").join("providers.toml");
    Ok(path.is_file().then_some(path))
}

/// Reads and parses a config file; errors name the file and the line.
pub fn load(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(format!("cannot read config file {}: {e}", path.display()))
    })?;
    parse(&text).map_err(|e| ConfigError::new(format!("{}: {}", path.display(), e.0)))
}

/// Parses config text; the error gives the line and column.
pub fn parse(text: &str) -> Result<FileConfig> {
    toml::from_str(text).map_err(|e| {
        let location = e.span().map(|span| {
            let line = text[..span.start].matches('\n').count() + 1;
            let column = span.start - text[..span.start].rfind('\n').map_or(0, |p| p + 1) + 1;
            format!("line {line}, column {column}: ")
        });
        ConfigError::new(format!(
            "invalid config: {}{}",
            location.unwrap_or_default(),
            e.message()
        ))
    })
}

fn check_unit(name: &str, value: f64) -> Result<f64> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::new(format!(
            "{name} must be between 0 and 1, got {value}"
        )))
    }
}

/// Resolves the settings of `ask` from its flags, the config file and the environment.
pub fn resolve(args: &AskArgs, env: &Env) -> Result<Settings> {
    let config_path = discover(args.config.as_deref(), env)?;
    let file = match &config_path {
        Some(path) => load(path)?,
        None => FileConfig::default(),
    };
    resolve_with(args, &file, config_path, env)
}

pub fn resolve_with(
    args: &AskArgs,
    file: &FileConfig,
    config_path: Option<PathBuf>,
    env: &Env,
) -> Result<Settings> {
    let c = &file.consensus;
    let a = &args.consensus;
    let seats = resolve_panel(args, file, env)?;

    let strategy = match (&a.strategy, &c.strategy) {
        (Some(s), _) => *s,
        (None, Some(s)) => s
            .parse::<StrategyKind>()
            .map_err(|e| ConfigError::new(format!("[consensus] strategy: {e}")))?,
        (None, None) => StrategyKind::Metastable,
    };
    let mut params = Params::defaults(seats.len());
    params.strategy = strategy;
    // A vote is one independent round unless refinement is asked for.
    let default_rounds = match strategy {
        StrategyKind::Vote => 0,
        _ => params.rounds,
    };
    params.rounds = a.rounds.or(c.rounds).unwrap_or(default_rounds);
    params.k = a.k.or(c.k).unwrap_or(params.k);
    params.alpha = check_unit("--alpha", a.alpha.or(c.alpha).unwrap_or(params.alpha))?;
    params.beta_1 = a.beta_1.or(c.beta_1).unwrap_or(params.beta_1);
    if !(params.beta_1 >= 0.0 && params.beta_1.is_finite()) {
        return Err(ConfigError::new(format!(
            "--beta1 must be a number >= 0, got {}",
            params.beta_1
        )));
    }
    params.beta_2 = a.beta_2.or(c.beta_2).unwrap_or(params.beta_2);
    if !(params.beta_2 >= 0.0 && params.beta_2.is_finite()) {
        return Err(ConfigError::new(format!(
            "--beta2 must be a number >= 0, got {}",
            params.beta_2
        )));
    }
    if params.rounds > 100 {
        return Err(ConfigError::new(format!(
            "--rounds {} is more than the limit of 100",
            params.rounds
        )));
    }
    let seed = a.seed.or(c.seed);
    params.seed = seed.unwrap_or_else(random_seed);
    params.quorum = a.quorum.or(c.quorum).unwrap_or(default_quorum(seats.len()));
    if params.quorum == 0 || params.quorum > seats.len() {
        return Err(ConfigError::new(format!(
            "--quorum {} is impossible with {} seat(s): use 1..={}",
            params.quorum,
            seats.len(),
            seats.len()
        )));
    }
    if let Some(answer) = a.answer.as_deref().or(c.answer.as_deref()) {
        params.answer = answer
            .parse::<AnswerMode>()
            .map_err(|e| ConfigError::new(format!("--answer: {e}")))?;
    }
    if let Some(metric) = a.similarity.as_deref().or(c.similarity.as_deref()) {
        params.similarity = metric
            .parse::<Metric>()
            .map_err(|e| ConfigError::new(format!("--similarity: {e}")))?;
    }
    params.tolerance = a.tolerance.or(c.tolerance).unwrap_or(0.0);
    if !(params.tolerance >= 0.0 && params.tolerance.is_finite()) {
        return Err(ConfigError::new(format!(
            "--tolerance must be a number >= 0, got {}",
            params.tolerance
        )));
    }
    if let Some(share) = a.quorum_share.as_deref().or(c.quorum_share.as_deref()) {
        params.quorum_share = share
            .parse()
            .map_err(|e| ConfigError::new(format!("--quorum-share: {e}")))?;
    }
    if let Some(rule) = a.rule.as_deref().or(c.rule.as_deref()) {
        params.rule = rule
            .parse()
            .map_err(|e| ConfigError::new(format!("--rule: {e}")))?;
    }
    params.confidence = a.confidence || c.confidence.unwrap_or(false);
    if params.confidence && !matches!(strategy, StrategyKind::Metastable | StrategyKind::Vote) {
        return Err(ConfigError::new(format!(
            "--confidence works with --strategy metastable or vote, not {}",
            strategy.name()
        )));
    }
    params.faults = a.faults.or(c.faults);
    if strategy == StrategyKind::Bft {
        let f = params
            .faults
            .unwrap_or_else(|| crate::consensus::bft::default_faults(seats.len()));
        crate::consensus::bft::check_faults(seats.len(), f).map_err(ConfigError::new)?;
    }
    params.system = args.system.clone().or_else(|| c.system.clone());

    let mut policy = Policy::default();
    if let Some(secs) = args.calls.timeout.or(c.timeout) {
        if !(secs > 0.0 && secs.is_finite()) {
            return Err(ConfigError::new(format!(
                "--timeout must be a positive number of seconds, got {secs}"
            )));
        }
        policy.call_timeout = Duration::from_secs_f64(secs);
        policy.idle_timeout = policy.idle_timeout.min(policy.call_timeout);
    }
    policy.retries = args.calls.retries.or(c.retries).unwrap_or(policy.retries);
    policy.run_deadline = seconds("--deadline", args.calls.deadline.or(c.deadline))?;
    policy.round_timeout = seconds(
        "--round-timeout",
        args.calls.round_timeout.or(c.round_timeout),
    )?;

    let max_cost = args.calls.max_cost.or(c.max_cost);
    if let Some(usd) = max_cost {
        if !(usd > 0.0 && usd.is_finite()) {
            return Err(ConfigError::new(format!(
                "--max-cost must be a positive number of USD, got {usd}"
            )));
        }
        if let Some(seat) = seats.iter().find(|s| s.price.is_none()) {
            return Err(ConfigError::new(format!(
                "--max-cost needs a price for every seat, and {} has none: set price = {{ input = USD, output = USD }} (per million tokens) in [providers.{}] or in its [[participants]] entry",
                seat.name, seat.provider_name
            )));
        }
    }

    let synthesizer = match a.synthesize.as_deref().or(c.synthesize.as_deref()) {
        Some(flag) => Some(resolve_synthesizer(flag, args, file, env)?),
        None => None,
    };

    Ok(Settings {
        params,
        seed_given: seed.is_some(),
        seats,
        policy,
        config_path,
        max_cost,
        synthesizer,
    })
}

/// A positive number of seconds from a flag or its config key.
fn seconds(flag: &str, value: Option<f64>) -> Result<Option<Duration>> {
    match value {
        None => Ok(None),
        Some(secs) if secs > 0.0 && secs.is_finite() && secs < 1e9 => {
            Ok(Some(Duration::from_secs_f64(secs)))
        }
        Some(secs) => Err(ConfigError::new(format!(
            "{flag} must be a positive number of seconds, got {secs}"
        ))),
    }
}

fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    // Keep seeds short enough to retype.
    (nanos ^ u64::from(std::process::id()).rotate_left(32)) % 1_000_000_000
}

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

/// The `--synthesize PROVIDER:MODEL` seat.
fn resolve_synthesizer(
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
    let req = SeatRequest {
        provider: provider.clone(),
        model,
        name: None,
        count: 1,
        temperature: None,
        weight: 1.0,
        system: None,
        max_tokens: None,
        script: None,
        sleep: false,
        origin: format!("--synthesize {flag}"),
        price: None,
    };
    let (provider_value, model, key_env) = resolve_provider(&req, args, file, env)?;
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
        price: file.providers.get(&req.provider).and_then(|s| s.price),
    })
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

fn resolve_panel(args: &AskArgs, file: &FileConfig, env: &Env) -> Result<Vec<SeatSpec>> {
    let requests: Vec<SeatRequest> = if !args.models.is_empty() {
        args.models
            .iter()
            .map(|flag| {
                let (provider, model, count) = parse_model_flag(flag)?;
                Ok(SeatRequest {
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
                    origin: format!("-m {flag}"),
                })
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
        if req.count == 0 || req.count > 64 {
            return Err(ConfigError::new(format!(
                "{}: count must be between 1 and 64",
                req.origin
            )));
        }
        if !(req.weight > 0.0 && req.weight.is_finite()) {
            return Err(ConfigError::new(format!(
                "{}: weight must be a positive number",
                req.origin
            )));
        }
        let temperature = req.temperature.or(args.calls.temperature);
        if let Some(t) = temperature
            && !(t >= 0.0 && t.is_finite())
        {
            return Err(ConfigError::new(format!(
                "{}: temperature must be a number >= 0",
                req.origin
            )));
        }
        let (provider, model, key_env) = resolve_provider(&req, args, file, env)?;
        let price = req
            .price
            .or_else(|| file.providers.get(&req.provider).and_then(|s| s.price))
            .or_else(|| pricing::lookup(&req.provider, &model));
        if let Some(price) = price
            && !(price.input >= 0.0
                && price.output >= 0.0
                && price.input.is_finite()
                && price.output.is_finite())
        {
            return Err(ConfigError::new(format!(
                "{}: price must be two numbers >= 0 (USD per million input and output tokens)",
                req.origin
            )));
        }
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
                provider: provider.clone(),
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
            Some(SeatRequest {
                provider: v.name.to_string(),
                model: None,
                name: None,
                count: 1,
                temperature: None,
                weight: 1.0,
                system: None,
                max_tokens: None,
                script: None,
                sleep: false,
                price: None,
                origin: format!("the {var} variable"),
            })
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

const KINDS: &str =
    "\"openai\", \"azure\", \"anthropic\", \"gemini\", \"ollama\", \"command\" or \"mock\"";

fn resolve_provider(
    req: &SeatRequest,
    args: &AskArgs,
    file: &FileConfig,
    env: &Env,
) -> Result<(Provider, String, Option<String>)> {
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
    if let Some(n) = section.and_then(|s| s.max_concurrency)
        && n == 0
    {
        return Err(ConfigError::new(format!(
            "[providers.{}] max_concurrency must be at least 1",
            req.provider
        )));
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
            ))
        }
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
) -> Result<(Provider, String, Option<String>)> {
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
    if key.is_none() && required && !candidates.is_empty() {
        return Err(ConfigError::new(format!(
            "{}: provider `{name}` needs an API key: set the environment variable {} (or change api_key_env in [providers.{name}])",
            req.origin,
            candidates.join(" or ")
        )));
    }

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
    let provider = match kind {
        "anthropic" => Provider::Anthropic(anthropic::Endpoint {
            name: name.clone(),
            base_url,
            key,
            stream,
            headers,
        }),
        "gemini" => Provider::Gemini(gemini::Endpoint {
            name: name.clone(),
            base_url,
            key,
            stream,
            headers,
        }),
        "ollama" => Provider::Ollama(ollama::Endpoint {
            name: name.clone(),
            base_url,
            key,
            stream,
            headers,
        }),
        _ => {
            let mut endpoint = if kind == "azure" {
                let api_version = section
                    .and_then(|s| s.api_version.clone())
                    .or_else(|| env.get("OPENAI_API_VERSION").map(str::to_string));
                Endpoint::azure(name.clone(), &base_url, api_version)
            } else {
                Endpoint::new(name.clone(), base_url.clone())
            };
            // OpenAI itself (also behind a proxy) and Azure take the current field.
            let official = base_url.contains("api.openai.com")
                || defaults.is_some_and(|v| v.max_completion_tokens);
            endpoint.max_tokens_field = section.and_then(|s| s.max_tokens_field).unwrap_or(
                if official || kind == "azure" {
                    MaxTokensField::MaxCompletionTokens
                } else {
                    MaxTokensField::MaxTokens
                },
            );
            endpoint.key = key;
            endpoint.stream = stream;
            endpoint.headers = headers;
            Provider::OpenAi(endpoint)
        }
    };
    Ok((provider, model, key_env))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_flags_split_on_the_first_colon() {
        assert_eq!(
            parse_model_flag("ollama:llama3:8b").unwrap(),
            ("ollama".into(), Some("llama3:8b".into()), 1)
        );
        assert_eq!(
            parse_model_flag("openrouter:meta-llama/llama-3.3-70b-instruct:free@3").unwrap(),
            (
                "openrouter".into(),
                Some("meta-llama/llama-3.3-70b-instruct:free".into()),
                3
            )
        );
        assert_eq!(parse_model_flag("groq").unwrap(), ("groq".into(), None, 1));
        assert!(parse_model_flag(":x").is_err());
        assert!(parse_model_flag("a:b@0").is_err());
    }

    #[test]
    fn bad_toml_names_its_line() {
        let err = parse("[consensus]\nrounds = 3\nk = \"three\"\n").unwrap_err();
        assert!(err.0.contains("line 3"), "{}", err.0);
        let err = parse("[consensus]\nroundz = 3\n").unwrap_err();
        assert!(
            err.0.contains("line 2") && err.0.contains("roundz"),
            "{}",
            err.0
        );
    }

    #[test]
    fn the_example_schema_parses() {
        let text = include_str!("../providers.example.toml");
        let file = parse(text).unwrap();
        assert!(!file.participants.is_empty());
    }
}
