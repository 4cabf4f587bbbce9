//! Progress on standard error while calls are in flight: one line per participant.
//! Disabled (every method a no-op) when stderr is not a terminal or the output is
//! --quiet or --json. Seat names, error messages and log lines are untrusted: they pass
//! [`visible`] on their way to the terminal.

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::report::text::visible;

pub struct Progress {
    bars: Option<(MultiProgress, Vec<ProgressBar>)>,
}

impl Progress {
    pub fn new(names: &[String], enabled: bool) -> Progress {
        if !enabled {
            return Progress { bars: None };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let names: Vec<String> = names.iter().map(|n| visible(n).into_owned()).collect();
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        let style =
            ProgressStyle::with_template(&format!("{{spinner}} {{prefix:<{width}}}  {{msg}}"))
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bars = names
            .iter()
            .map(|name| {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_prefix(name.clone());
                bar.set_message("waiting");
                bar
            })
            .collect();
        Progress {
            bars: Some((multi, bars)),
        }
    }

    pub fn disabled() -> Progress {
        Progress { bars: None }
    }

    pub fn started(&self, seat: usize, round: usize) {
        if let Some((_, bars)) = &self.bars {
            bars[seat].set_message(format!("round {round}: asking…"));
            bars[seat].enable_steady_tick(Duration::from_millis(120));
        }
    }

    pub fn finished(&self, seat: usize, round: usize, latency_ms: f64, error: Option<&str>) {
        if let Some((_, bars)) = &self.bars {
            let msg = match error {
                None => format!("round {round}: answered in {:.1} s", latency_ms / 1000.0),
                Some(e) => format!(
                    "round {round}: failed: {}",
                    visible(&e.chars().take(80).collect::<String>())
                ),
            };
            bars[seat].disable_steady_tick();
            bars[seat].set_message(msg);
            bars[seat].tick();
        }
    }

    /// A call failed and will be tried again after `delay`: the participant's line says
    /// so while it waits, so a slow seat is visibly a rate-limited one.
    pub fn retrying(&self, seat: usize, round: usize, attempt: u32, delay: Duration, reason: &str) {
        if let Some((_, bars)) = &self.bars {
            bars[seat].set_message(format!(
                "round {round}: attempt {attempt} failed ({}), retrying in {}",
                visible(&reason.chars().take(60).collect::<String>()),
                crate::provider::http::human_duration(delay)
            ));
        }
    }

    /// Prints a log line on stderr (the `-v` lines), above the progress lines when they
    /// are shown so that neither garbles the other. A line that cannot be written is
    /// dropped: a log never fails the run.
    pub fn log(&self, line: &str) {
        let line = visible(line);
        match &self.bars {
            Some((multi, _)) if multi.println(&line).is_ok() => {}
            _ => crate::stderr_line!("{line}"),
        }
    }

    /// Removes the progress lines before the result is printed.
    pub fn clear(&self) {
        if let Some((multi, bars)) = &self.bars {
            for bar in bars {
                bar.finish_and_clear();
            }
            let _ = multi.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_shows_on_the_participants_line_until_the_answer() {
        let progress = Progress::new(&["a".to_string(), "b".to_string()], true);
        let line = |seat: usize| match &progress.bars {
            Some((_, bars)) => bars[seat].message(),
            None => unreachable!("enabled"),
        };
        progress.started(1, 0);
        progress.retrying(1, 0, 1, Duration::from_millis(1500), "429 rate limited");
        assert!(
            line(1).contains("attempt 1 failed (429 rate limited), retrying in"),
            "{}",
            line(1)
        );
        assert_eq!(line(0), "waiting");
        progress.finished(1, 0, 2100.0, None);
        assert_eq!(line(1), "round 0: answered in 2.1 s");
        progress.clear();
    }

    #[test]
    fn untrusted_names_and_errors_are_shown_as_escapes() {
        let progress = Progress::new(&["evil\x1b]0;title\x07".to_string()], true);
        let Some((_, bars)) = &progress.bars else {
            unreachable!("enabled")
        };
        assert_eq!(bars[0].prefix(), "evil\\u{1b}]0;title\\u{7}");
        progress.retrying(0, 0, 1, Duration::from_millis(10), "503\r\u{202e}x");
        assert!(
            bars[0].message().contains("503\\u{d}\\u{202e}x"),
            "{}",
            bars[0].message()
        );
        progress.finished(0, 0, 5.0, Some("boom\x1b[2J"));
        assert_eq!(bars[0].message(), "round 0: failed: boom\\u{1b}[2J");
        progress.clear();
    }
}
