//! `ask --dry-run`: the calls a run would make in its worst case, with the tokens and the
//! cost they could reach, and nothing sent.
//!
//! The worst case is the one `--max-cost` guards against: every participant stays in
//! every round the strategy allows (nobody settles, no round is skipped, no early
//! commit), every call uses its whole output limit, and every byte of a prompt counts
//! as a token. Round 0's prompts are the strategy's own; a later round's are built with
//! the same prompt builders, quoting answers as long as their seats' output limits (cut
//! as the strategy cuts them).

use std::fmt::Write as _;

use serde::Serialize;

use crate::config::{Env, SeatSpec, Settings};
use crate::consensus::{self, CallSpec, StrategyKind, bft, leader, prompt, rank};
use crate::inspect::{self, SeatInfo};
use crate::provider::pricing::ASSUMED_MAX_OUTPUT;
use crate::report::text::visible;
use crate::run::budget;

/// The plan, as `--dry-run --json` prints it.
#[derive(Debug, Serialize)]
pub struct Plan {
    /// Always true: tells a plan from a result.
    pub dry_run: bool,
    pub config: Option<String>,
    pub strategy: StrategyKind,
    /// `--rounds`: sampling rounds (vote: refinement rounds; leader: terms).
    pub rounds: usize,
    pub k: usize,
    pub seed: u64,
    pub quorum: usize,
    pub max_cost_usd: Option<f64>,
    pub seats: Vec<PlannedSeat>,
    pub synthesizer: Option<PlannedSeat>,
    /// Each batch of calls, in order (the synthesis last).
    pub stages: Vec<Stage>,
    pub worst_case: Totals,
    /// `--weights`: the weights applied and where beta_2 came from; absent without.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<crate::weights::WeightsReport>,
}

/// A seat as `providers` shows it, with its share of the worst case.
#[derive(Debug, Serialize)]
pub struct PlannedSeat {
    #[serde(flatten)]
    pub info: SeatInfo,
    /// The output limit a call is counted with: `max_tokens`, else 4096.
    pub max_output_tokens: u64,
    #[serde(flatten)]
    pub totals: Totals,
}

/// One batch of calls made together.
#[derive(Debug, Serialize)]
pub struct Stage {
    pub round: usize,
    pub what: String,
    #[serde(flatten)]
    pub totals: Totals,
}

/// Calls, tokens and cost at most.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    pub calls: usize,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// USD; null when a call's seat is unpriced.
    pub cost_usd: Option<f64>,
    /// The seats without a price among those called.
    pub unpriced: Vec<String>,
}

impl Totals {
    fn add_call(&mut self, seat: &SeatSpec, input: u64, output: u64) {
        self.calls += 1;
        self.input_tokens += input;
        self.output_tokens += output;
        if seat.price.is_none() && !self.unpriced.contains(&seat.name) {
            self.unpriced.push(seat.name.clone());
        }
        let bound = seat.price.map_or(0.0, |p| p.bound(input, output));
        self.cost_usd = self
            .unpriced
            .is_empty()
            .then(|| self.cost_usd.unwrap_or(0.0) + bound);
    }

    fn add(&mut self, other: &Totals) {
        self.calls += other.calls;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        for name in &other.unpriced {
            if !self.unpriced.contains(name) {
                self.unpriced.push(name.clone());
            }
        }
        self.cost_usd = self
            .unpriced
            .is_empty()
            .then(|| self.cost_usd.unwrap_or(0.0) + other.cost_usd.unwrap_or(0.0));
    }
}

/// The output tokens a call of `seat` is counted with.
fn output_limit(seat: &SeatSpec) -> u64 {
    seat.max_tokens.map_or(ASSUMED_MAX_OUTPUT, u64::from)
}

/// The worst-case calls of a run of `settings` on `prompt`.
pub fn plan(settings: &Settings, prompt: &str, env: &Env) -> Plan {
    let mut planner = Planner::new(settings, prompt);
    planner.strategy();
    if let Some(synth) = &settings.synthesizer {
        planner.synthesis(synth);
    }
    let Planner { stages, .. } = planner;

    let mut seats: Vec<PlannedSeat> = settings
        .seats
        .iter()
        .map(|s| PlannedSeat {
            info: inspect::info(s, env),
            max_output_tokens: output_limit(s),
            totals: Totals::default(),
        })
        .collect();
    let mut synthesizer = settings.synthesizer.as_ref().map(|s| PlannedSeat {
        info: inspect::info(s, env),
        max_output_tokens: output_limit(s),
        totals: Totals::default(),
    });
    let mut planned = Vec::new();
    let mut worst = Totals::default();
    for (round, what, calls) in stages {
        let mut totals = Totals::default();
        for call in calls {
            let (spec, seat_totals) = match call.seat {
                Some(i) => (&settings.seats[i], &mut seats[i].totals),
                None => match (&settings.synthesizer, &mut synthesizer) {
                    (Some(spec), Some(s)) => (spec, &mut s.totals),
                    _ => continue,
                },
            };
            seat_totals.add_call(spec, call.input, call.output);
            totals.add_call(spec, call.input, call.output);
        }
        worst.add(&totals);
        planned.push(Stage {
            round,
            what,
            totals,
        });
    }
    Plan {
        dry_run: true,
        config: settings
            .config_path
            .as_ref()
            .map(|p| p.display().to_string()),
        strategy: settings.params.strategy,
        rounds: settings.params.rounds,
        k: settings.params.k,
        seed: settings.params.seed,
        quorum: settings.params.quorum,
        max_cost_usd: settings.max_cost,
        seats,
        synthesizer,
        stages: planned,
        worst_case: worst,
        weights: settings
            .weights
            .as_ref()
            .map(|w| w.report(settings.params.beta_2)),
    }
}

/// One planned call: its seat (None: the synthesizer) and its worst-case tokens.
struct Call {
    seat: Option<usize>,
    input: u64,
    output: u64,
}

struct Planner<'a> {
    settings: &'a Settings,
    question: &'a str,
    /// Each seat's longest answer: as many characters as its output limit, each counted
    /// as a token when quoted.
    answers: Vec<String>,
    /// The system prompt of each seat's answering calls (round 0's, the same in every round).
    systems: Vec<Option<String>>,
    stages: Vec<(usize, String, Vec<Call>)>,
}

impl<'a> Planner<'a> {
    fn new(settings: &'a Settings, question: &'a str) -> Planner<'a> {
        let answers = settings
            .seats
            .iter()
            // Quoting cuts an answer at PEER_ANSWER_LIMIT characters (hanzo: 1,000), so
            // a longer stand-in would change nothing.
            .map(|s| "x".repeat(output_limit(s).min(prompt::PEER_ANSWER_LIMIT as u64 + 1) as usize))
            .collect();
        Planner {
            settings,
            question,
            answers,
            systems: vec![None; settings.seats.len()],
            stages: Vec::new(),
        }
    }

    fn n(&self) -> usize {
        self.settings.seats.len()
    }

    fn call(&self, seat: usize, system: Option<&str>, user: &str) -> Call {
        let spec = &self.settings.seats[seat];
        let (input, output) = budget::worst_tokens(spec, system, user);
        Call {
            seat: Some(seat),
            input,
            output,
        }
    }

    /// A judging call's system prompt (a ballot, an attestation, a vote): the seat's own
    /// or the run's, with no answer format.
    fn judge_system(&self, seat: usize) -> Option<String> {
        self.settings.seats[seat]
            .system
            .clone()
            .or_else(|| self.settings.params.system.clone())
    }

    /// The other seats whose answers are longest, at most `m` of them.
    fn longest_others(&self, seat: usize, m: usize) -> Vec<usize> {
        let mut others: Vec<usize> = (0..self.n()).filter(|&j| j != seat).collect();
        others.sort_by_key(|&j| std::cmp::Reverse(self.answers[j].len()));
        others.truncate(m);
        others
    }

    /// The longest answer of all (a proposal, the winner's key).
    fn longest(&self) -> &str {
        self.answers
            .iter()
            .max_by_key(|a| a.len())
            .map_or("", String::as_str)
    }

    fn push(&mut self, round: usize, what: impl Into<String>, calls: Vec<Call>) {
        if !calls.is_empty() {
            self.stages.push((round, what.into(), calls));
        }
    }

    fn strategy(&mut self) {
        let params = &self.settings.params;
        let seats = self
            .settings
            .seats
            .iter()
            .map(|s| s.engine_seat())
            .collect();
        // Round 0 is the strategy's own: its prompts and system prompts, exactly.
        let first: Vec<CallSpec> = consensus::build(params, seats, self.question)
            .next_round()
            .unwrap_or_default();
        let mut calls = Vec::new();
        for c in &first {
            self.systems[c.seat] = c.system.as_deref().map(str::to_string);
            calls.push(self.call(c.seat, c.system.as_deref(), &c.user));
        }
        self.push(0, "answers", calls);
        let n = self.n();
        let rounds = params.rounds;
        match params.strategy {
            StrategyKind::Metastable | StrategyKind::Vote => {
                // Every seat is asked in every round (nobody settles, every key changes),
                // shown its own answer and min(k, n-1) peers; alone, a seat is not asked.
                if n < 2 {
                    return;
                }
                let m = params.k.min(n - 1);
                let asks = params.answer.asks_for_final_line();
                if m == 0 && params.strategy == StrategyKind::Metastable {
                    return;
                }
                for round in 1..=rounds {
                    let calls = (0..n)
                        .map(|seat| {
                            let peers: Vec<&str> = self
                                .longest_others(seat, m)
                                .into_iter()
                                .map(|j| self.answers[j].as_str())
                                .collect();
                            let user = prompt::refine(
                                self.question,
                                Some(&self.answers[seat]),
                                &peers,
                                asks,
                            );
                            self.call(seat, self.systems[seat].as_deref(), &user)
                        })
                        .collect();
                    self.push(round, "refinement", calls);
                }
            }
            StrategyKind::Hanzo => {
                // One shared prompt: the question and min(k, n) answers drawn with
                // replacement, each cut at 1,000 characters after its seat's name; at
                // worst the longest of them every time.
                let line = |j: usize| {
                    let text = &self.answers[j][..self.answers[j].len().min(1000)];
                    format!("\n[{}] {text}", self.settings.seats[j].name)
                };
                let longest = (0..n).map(line).max_by_key(String::len).unwrap_or_default();
                let mut user = format!("Query: {}\n\nPeers:", self.question);
                for _ in 0..params.k.min(n) {
                    user.push_str(&longest);
                }
                user.push_str("\n\nRefine your response:");
                for round in 1..=rounds {
                    let calls = (0..n)
                        .map(|seat| self.call(seat, self.systems[seat].as_deref(), &user))
                        .collect();
                    self.push(round, "refinement", calls);
                }
            }
            StrategyKind::Rank => {
                if n < 2 {
                    return;
                }
                let calls = (0..n)
                    .map(|seat| {
                        let shown: Vec<&str> = self
                            .longest_others(seat, n - 1)
                            .into_iter()
                            .map(|j| self.answers[j].as_str())
                            .collect();
                        let user = rank::ballot_prompt(self.question, &shown);
                        self.call(seat, self.judge_system(seat).as_deref(), &user)
                    })
                    .collect();
                self.push(1, "ballots", calls);
            }
            StrategyKind::Bft => {
                let proposal = self.longest().to_string();
                let digest = bft::sha256_hex(&proposal);
                for (round, what, prepared) in [(1, "prepare", None), (2, "commit", Some((n, n)))] {
                    let calls = (0..n)
                        .map(|seat| {
                            let user = bft::attestation_prompt(
                                self.question,
                                Some(&self.answers[seat]),
                                &proposal,
                                &digest,
                                prepared,
                            );
                            self.call(seat, self.judge_system(seat).as_deref(), &user)
                        })
                        .collect();
                    self.push(round, what, calls);
                }
            }
            StrategyKind::Leader => self.leader(),
        }
    }

    /// Every term ends without a commit: term 1 polls the followers on the first
    /// leader's answer; each later term's leader writes a proposal from the previous one
    /// and every follower's critique, and the followers vote on it.
    fn leader(&mut self) {
        let n = self.n();
        let params = &self.settings.params;
        let terms = params.rounds.max(1);
        let asks = params.answer.asks_for_final_line();
        // A leader alone is its own majority.
        if n < 2 {
            return;
        }
        // Leaders take turns in the order of round 0's speed, unknown before the run: the
        // seats with the longest answers lead first.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&j| std::cmp::Reverse(self.answers[j].len()));
        let mut batch = 1;
        for term in 1..=terms {
            let leader = order[(term - 1) % n];
            if term > 1 {
                let critiques: Vec<&str> = self
                    .longest_others(leader, n - 1)
                    .into_iter()
                    .map(|j| self.answers[j].as_str())
                    .collect();
                let user = leader::leader_prompt(
                    self.question,
                    &self.answers[leader],
                    &critiques,
                    term,
                    asks,
                );
                let call = self.call(leader, self.systems[leader].as_deref(), &user);
                self.push(batch, format!("term {term}: proposal"), vec![call]);
                batch += 1;
            }
            let proposal = self.answers[leader].clone();
            let calls = (0..n)
                .filter(|&seat| seat != leader)
                .map(|seat| {
                    let user = leader::vote_prompt(
                        self.question,
                        Some(&self.answers[seat]),
                        &proposal,
                        term,
                    );
                    self.call(seat, self.judge_system(seat).as_deref(), &user)
                })
                .collect();
            self.push(batch, format!("term {term}: votes"), calls);
            batch += 1;
        }
    }

    /// The synthesis: every seat's answer with its compared part as long as the answer.
    fn synthesis(&mut self, synth: &SeatSpec) {
        let answers: Vec<(Option<&str>, &str)> = self
            .answers
            .iter()
            .map(|a| (Some(a.as_str()), a.as_str()))
            .collect();
        let n = self.n();
        let agreement = format!(
            "not final — the panel's answer is {} with support 100%, {n} of {n} participants answered",
            self.longest()
        );
        let user = prompt::synthesis(self.question, &answers, &agreement);
        let (input, output) = budget::worst_tokens(synth, None, &user);
        let round = self.stages.last().map_or(0, |s| s.0 + 1);
        self.stages.push((
            round,
            "synthesis".to_string(),
            vec![Call {
                seat: None,
                input,
                output,
            }],
        ));
    }
}

/// The plan as text: the panel as `providers` shows it, the stages, the totals.
pub fn render(plan: &Plan) -> String {
    let mut out = String::from("Dry run: nothing was sent. The worst case of this run:\n\n");
    let panel = inspect::Panel {
        config: plan.config.clone(),
        seats: plan.seats.iter().map(|s| s.info.clone()).collect(),
    };
    out.push_str(&inspect::render(&panel));
    if let Some(s) = &plan.synthesizer {
        let _ = writeln!(
            out,
            "synthesizer: {} ({} {}, {})",
            visible(&s.info.name),
            s.info.kind,
            visible(&s.info.model),
            match s.info.price {
                Some(p) => format!("${}/${} per million tokens", p.input, p.output),
                None => "unpriced".to_string(),
            }
        );
    }
    let _ = writeln!(
        out,
        "\nstrategy {}, --rounds {}, k {}, seed {}, quorum {}\n",
        plan.strategy.name(),
        plan.rounds,
        plan.k,
        plan.seed,
        plan.quorum
    );
    if let Some(w) = &plan.weights {
        let _ = writeln!(out, "{}\n", visible(&w.line()));
    }
    let mut rows = vec![[
        "ROUND".to_string(),
        "CALLS".to_string(),
        "INPUT TOKENS".to_string(),
        "OUTPUT TOKENS".to_string(),
        "COST".to_string(),
        "WHAT".to_string(),
    ]];
    for s in &plan.stages {
        rows.push([
            s.round.to_string(),
            s.totals.calls.to_string(),
            s.totals.input_tokens.to_string(),
            s.totals.output_tokens.to_string(),
            cost(&s.totals),
            s.what.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c == 5 {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:>width$}  ", width = widths[c]);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let w = &plan.worst_case;
    let _ = writeln!(
        out,
        "\nat most {} calls, {} input and {} output tokens, {}",
        w.calls,
        w.input_tokens,
        w.output_tokens,
        match w.cost_usd {
            Some(c) => format!("${c:.4}"),
            None => format!(
                "cost unknown: {} unpriced (set `price` in the config)",
                w.unpriced
                    .iter()
                    .map(|n| visible(n).into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    );
    if let Some(limit) = plan.max_cost_usd {
        let verdict = match w.cost_usd {
            Some(c) if c <= limit => "the worst case fits",
            _ => "the run stops before a round whose worst case would pass it",
        };
        let _ = writeln!(out, "--max-cost ${limit}: {verdict}");
    }
    out
}

fn cost(totals: &Totals) -> String {
    totals
        .cost_usd
        .map_or("unknown".to_string(), |c| format!("${c:.4}"))
}
