//! Configuration: where the file is found, and how flags, file and defaults combine
//! (flag > file > default, one rule in [`limits::pick`]) into [`Settings`]. The file's
//! schema is in `schema.rs`, the panel (seats, providers, keys) in `panel.rs`.

#[cfg(test)]
mod fuzz;
pub mod limits;
mod log_path;
mod mcp;
mod panel;
mod schema;
mod weights;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::cli::AskArgs;
use crate::consensus::{Params, Seat, StrategyKind, Text, default_quorum};
use crate::error::ConfigError;
use crate::provider::Provider;
use crate::provider::http::Policy;
use crate::provider::pricing::Price;
use limits::{DEFAULT_DEADLINE_SECS, Opt, Picked, Source, pick, pick_or, range};
use log_path::log_path;
pub use log_path::log_path_for_logs;
pub use panel::parse_model_flag;
pub use schema::{ConsensusSection, FileConfig, ParticipantSection, ProviderSection};
pub use weights::for_category;

type Result<T> = std::result::Result<T, ConfigError>;

/// The environment, captured once so that resolution is a pure function of its inputs.
#[derive(Clone, Debug, Default)]
pub struct Env {
    vars: HashMap<String, String>,
    /// Variables whose name or value is not UTF-8: unusable, and named when asked for.
    not_utf8: HashSet<String>,
}

impl Env {
    /// The process environment. A variable that is not UTF-8 (any variable: the
    /// environment is the user's, not ours) is left out instead of ending the program.
    pub fn from_process() -> Env {
        let mut env = Env::default();
        for (name, value) in std::env::vars_os() {
            match (name.into_string(), value.into_string()) {
                (Ok(name), Ok(value)) => {
                    env.vars.insert(name, value);
                }
                (Ok(name), Err(_)) => {
                    env.not_utf8.insert(name);
                }
                (Err(name), _) => {
                    env.not_utf8.insert(name.to_string_lossy().into_owned());
                }
            }
        }
        env
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Env {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            not_utf8: HashSet::new(),
        }
    }

    /// Whether the variable is set to something that is not UTF-8 (and so unusable).
    pub fn is_not_utf8(&self, name: &str) -> bool {
        self.not_utf8.contains(name)
    }

    /// A variable's value; empty counts as unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
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
    /// Why the seat cannot be called: its key variable is not set (an error for `ask`;
    /// `providers` shows the seat).
    pub missing_key: Option<String>,
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
    /// Where the run log is, or None when it is off (`--no-log`, `[log] enabled = false`,
    /// or no home directory to keep it in).
    pub log_path: Option<PathBuf>,
    /// `--cache`: answer calls identical to a logged successful one from the log.
    pub cache: bool,
    /// `--wait-all`: every round waits for every call, even when the outcome is certain
    /// without the calls still out.
    pub wait_all: bool,
    /// `--weights`: the weights file applied to the seats' weights.
    pub weights: Option<crate::weights::InUse>,
}

/// Finds the config file: the flag, then $LLM_CONSENSUS_CONFIG, then the XDG location.
pub fn discover(flag: Option<&Path>, env: &Env) -> Result<Option<PathBuf>> {
    if let Some(path) = flag {
        check_config_path(path, "given with --config")?;
        return Ok(Some(path.to_path_buf()));
    }
    if let Some(path) = env.get("LLM_CONSENSUS_CONFIG") {
        let path = PathBuf::from(path);
        check_config_path(&path, "named by $LLM_CONSENSUS_CONFIG")?;
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

/// A named config must exist and not be a directory; anything else readable (a file,
/// `/dev/null`, a pipe from `<(...)`) is read.
fn check_config_path(path: &Path, origin: &str) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(ConfigError::new(format!(
            "config file {} is a directory ({origin}): name the file itself, e.g. {}",
            path.display(),
            path.join("providers.toml").display()
        ))),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ConfigError::new(format!(
            "config file {} not found ({origin})",
            path.display()
        ))),
        Err(e) => Err(ConfigError::new(format!(
            "cannot read config file {} ({origin}): {e}",
            path.display()
        ))),
    }
}

/// Reads and parses a config file; errors name the file and the line.
pub fn load(path: &Path) -> Result<FileConfig> {
    let bytes = std::fs::read(path).map_err(|e| {
        ConfigError::new(format!("cannot read config file {}: {e}", path.display()))
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        ConfigError::new(format!(
            "{}: invalid config: line {line}: not UTF-8 text",
            path.display()
        ))
    })?;
    parse(&text).map_err(|e| ConfigError::new(format!("{}: {}", path.display(), e.0)))
}

/// Parses config text; the error gives the line and column.
pub fn parse(text: &str) -> Result<FileConfig> {
    toml::from_str(text).map_err(|e| {
        let location = e
            .span()
            .and_then(|span| text.get(..span.start))
            .map(|before| {
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |p| p + 1) + 1;
                format!("line {line}, column {column}: ")
            });
        ConfigError::new(format!(
            "invalid config: {}{}",
            location.unwrap_or_default(),
            e.message().trim_end()
        ))
    })
}

/// Resolves the settings of `ask` from its flags, the config file and the environment.
pub fn resolve(args: &AskArgs, env: &Env) -> Result<Settings> {
    let settings = resolve_lenient(args, env)?;
    // A seat without its key is an error for a run (`providers` shows it instead).
    let synthesizer = settings.synthesizer.iter();
    if let Some(missing) = settings
        .seats
        .iter()
        .chain(synthesizer)
        .find_map(|s| s.missing_key.clone())
    {
        return Err(ConfigError::new(missing));
    }
    Ok(settings)
}

/// As [`resolve`], but a seat whose key is not set is kept (with `missing_key` set).
pub fn resolve_lenient(args: &AskArgs, env: &Env) -> Result<Settings> {
    let config_path = discover(args.config.as_deref(), env)?;
    let file = match &config_path {
        Some(path) => load(path)?,
        None => FileConfig::default(),
    };
    resolve_with(args, &file, config_path, env)
}

/// An option's flag and `[consensus]` key.
const fn opt(flag: &'static str, key: &'static str) -> Opt {
    Opt { flag, key }
}

/// Resolves every option flag > file > default, each checked against its range; seats
/// whose key is missing are kept with `missing_key` set.
pub fn resolve_with(
    args: &AskArgs,
    file: &FileConfig,
    config_path: Option<PathBuf>,
    env: &Env,
) -> Result<Settings> {
    let c = &file.consensus;
    let a = &args.consensus;
    let calls = &args.calls;
    // Flags first: a wrong flag is reported before anything the file says.
    check_call_flags(args)?;
    let mut seats = panel::resolve_panel(args, file, config_path.as_deref(), env)?;
    let n = seats.len();

    let strategy = match pick(opt("--strategy", "strategy"), a.strategy, None) {
        Some(p) => p.value,
        None => match pick(opt("--strategy", "strategy"), None, c.strategy.clone()) {
            Some(p) => p.parse()?,
            None => StrategyKind::Metastable,
        },
    };
    let mut params = Params::defaults(n);
    params.strategy = strategy;
    // A vote is one independent round unless refinement is asked for.
    let default_rounds = match strategy {
        StrategyKind::Vote => 0,
        _ => params.rounds,
    };
    let p = pick_or(
        opt("--rounds", "rounds"),
        a.rounds,
        c.rounds,
        default_rounds,
    );
    params.rounds = range::ROUNDS.check_count(&p.source, p.value)?;
    let p = pick_or(opt("-k", "k"), a.k, c.k, params.k);
    let k_range = if strategy == StrategyKind::Hanzo {
        range::HANZO_K
    } else {
        range::K
    };
    params.k = k_range.check_count(&p.source, p.value)?;
    for (slot, limit, o, flag, key) in [
        (
            &mut params.alpha,
            range::SHARE,
            opt("--alpha", "alpha"),
            a.alpha,
            c.alpha,
        ),
        (
            &mut params.beta_1,
            range::BETA_1,
            opt("--beta1", "beta_1"),
            a.beta_1,
            c.beta_1,
        ),
        (
            &mut params.beta_2,
            range::SHARE,
            opt("--beta2", "beta_2"),
            a.beta_2,
            c.beta_2,
        ),
        (
            &mut params.tolerance,
            range::SHARE,
            opt("--tolerance", "tolerance"),
            a.tolerance,
            c.tolerance,
        ),
    ] {
        if let Some(p) = pick(o, flag, key) {
            *slot = limit.check(&p.source, p.value)?;
        }
    }
    let seed = pick(opt("--seed", "seed"), a.seed, c.seed);
    params.seed = seed.as_ref().map_or_else(random_seed, |p| p.value);
    let p = pick_or(
        opt("--quorum", "quorum"),
        a.quorum,
        c.quorum,
        default_quorum(n),
    );
    if p.value == 0 || p.value > n {
        return Err(ConfigError::new(format!(
            "{} {} is impossible with {n} seat(s): use 1..={n}",
            p.source, p.value
        )));
    }
    params.quorum = p.value;
    let text =
        |o: Opt, flag: &Option<String>, key: &Option<String>| pick(o, flag.clone(), key.clone());
    if let Some(p) = text(opt("--answer", "answer"), &a.answer, &c.answer) {
        params.answer = p.parse()?;
    }
    if let Some(p) = text(
        opt("--similarity", "similarity"),
        &a.similarity,
        &c.similarity,
    ) {
        params.similarity = p.parse()?;
    }
    if let Some(p) = text(
        opt("--quorum-share", "quorum_share"),
        &a.quorum_share,
        &c.quorum_share,
    ) {
        params.quorum_share = p.parse()?;
    }
    if let Some(p) = text(opt("--rule", "rule"), &a.rule, &c.rule) {
        params.rule = p.parse()?;
    }
    // A flag that is a switch can only turn the option on.
    let confidence = pick(
        opt("--confidence", "confidence"),
        a.confidence.then_some(true),
        c.confidence,
    );
    params.confidence = confidence.as_ref().is_some_and(|p| p.value);
    if let Some(p) = confidence.filter(|p| p.value)
        && !matches!(strategy, StrategyKind::Metastable | StrategyKind::Vote)
    {
        return Err(ConfigError::new(format!(
            "{} works with --strategy metastable or vote, not {}",
            p.source,
            strategy.name()
        )));
    }
    let faults = pick(opt("--faults", "faults"), a.faults, c.faults);
    if strategy == StrategyKind::Bft {
        let f = faults
            .as_ref()
            .map_or_else(|| crate::consensus::bft::default_faults(n), |p| p.value);
        crate::consensus::bft::check_faults(n, f).map_err(|e| match &faults {
            // The engine's message names the flag; say where the number came from.
            Some(
                p @ Picked {
                    source: Source::Key(_),
                    ..
                },
            ) => ConfigError::new(format!("{} = {}: {e}", p.source, p.value)),
            _ => ConfigError::new(e),
        })?;
    }
    params.faults = faults.map(|p| p.value);
    params.system = text(opt("--system", "system"), &args.system, &c.system).map(|p| p.value);

    let policy = resolve_policy(args, c)?;

    let max_cost = pick(opt("--max-cost", "max_cost"), calls.max_cost, c.max_cost);
    if let Some(p) = &max_cost {
        range::MAX_COST.check(&p.source, p.value)?;
        if let Some(seat) = seats.iter().find(|s| s.price.is_none()) {
            return Err(ConfigError::new(format!(
                "{} needs a price for every seat, and {} has none: set price = {{ input = USD, output = USD }} (per million tokens) in [providers.{}] or in its [[participants]] entry",
                p.source, seat.name, seat.provider_name
            )));
        }
    }

    let synthesizer = match text(
        opt("--synthesize", "synthesize"),
        &a.synthesize,
        &c.synthesize,
    ) {
        Some(synth) => {
            let seat = panel::resolve_synthesizer(&synth.value, args, file, env)?;
            // The synthesis is paid for too: without a price the budget cannot bound it.
            if let Some(cost) = &max_cost
                && seat.price.is_none()
            {
                return Err(ConfigError::new(format!(
                    "{} needs a price for the synthesizer too, and {} {} has none: set price = {{ input = USD, output = USD }} (per million tokens) in [providers.{}]",
                    cost.source, synth.source, synth.value, seat.provider_name
                )));
            }
            Some(seat)
        }
        None => None,
    };

    if let Some(path) = &args.output.transcript {
        check_transcript(path)?;
    }
    let weights =
        weights::resolve_weights(args, c, config_path.as_deref(), &mut seats, &mut params)?;

    let log_path = log_path(args, file, config_path.as_deref(), env);
    Ok(Settings {
        params,
        seed_given: seed.is_some(),
        seats,
        policy,
        config_path,
        max_cost: max_cost.map(|p| p.value),
        synthesizer,
        log_path,
        cache: args.log.cache,
        wait_all: args.calls.wait_all,
        weights,
    })
}

/// The flags that have no `[consensus]` key and apply to every seat.
fn check_call_flags(args: &AskArgs) -> Result<()> {
    if let Some(t) = args.calls.temperature {
        range::TEMPERATURE.check(&Source::Flag("--temperature"), t)?;
    }
    if let Some(n) = args.calls.max_tokens {
        range::MAX_TOKENS.check(&Source::Flag("--max-tokens"), n)?;
    }
    Ok(())
}

/// Timeouts, retries and the run deadline.
fn resolve_policy(args: &AskArgs, c: &ConsensusSection) -> Result<Policy> {
    let calls = &args.calls;
    let mut policy = Policy::default();
    if let Some(p) = pick(opt("--timeout", "timeout"), calls.timeout, c.timeout) {
        policy.call_timeout = range::TIMEOUT.seconds(&p.source, p.value)?;
        policy.idle_timeout = policy.idle_timeout.min(policy.call_timeout);
    }
    let p = pick_or(
        opt("--retries", "retries"),
        calls.retries,
        c.retries,
        policy.retries,
    );
    policy.retries = range::RETRIES.check(&p.source, p.value)?;
    let p = pick_or(
        opt("--deadline", "deadline"),
        calls.deadline,
        c.deadline,
        DEFAULT_DEADLINE_SECS,
    );
    policy.run_deadline = Some(range::DEADLINE.seconds(&p.source, p.value)?);
    if let Some(p) = pick(
        opt("--round-timeout", "round_timeout"),
        calls.round_timeout,
        c.round_timeout,
    ) {
        policy.round_timeout = Some(range::ROUND_TIMEOUT.seconds(&p.source, p.value)?);
    }
    Ok(policy)
}

/// `--transcript` is checked before any call: a path that cannot be written would
/// otherwise only be found once the run's money is spent.
pub fn check_transcript(path: &Path) -> Result<()> {
    let shown = path.display();
    if path.is_dir() {
        return Err(ConfigError::new(format!(
            "--transcript {shown} is a directory: name a file, e.g. {}",
            path.join("transcript.json").display()
        )));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(ConfigError::new(format!(
            "--transcript {shown}: the directory {} does not exist",
            dir.display()
        )));
    }
    // Whether a file can be created there: made and removed at once, never the target.
    let probe = dir.join(format!(".llm-consensus-check-{}.tmp", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(ConfigError::new(format!(
            "--transcript {shown}: cannot write in {}: {e}",
            dir.display()
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
        let text = include_str!("../../providers.example.toml");
        let file = parse(text).unwrap();
        assert!(!file.participants.is_empty());
    }
}
