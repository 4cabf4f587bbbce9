//! Closing a round early (README, "A run does not wait for answers that cannot change
//! it"): a round closes once its outcome is certain whatever the calls still out return;
//! those calls are cancelled (the provider sees the connection close) and reported "not
//! needed". A split panel, or `--wait-all`, waits for every call.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Sandbox, WatchedServer, openai_ok};

const KEY: &str = "sk-early-test-key";
const FAST: Duration = Duration::from_millis(200);

/// One seat: the answer it gives and after how long.
type Seat = (&'static str, Duration);

/// A panel of OpenAI-compatible seats, one loopback server each.
struct Panel {
    sandbox: Sandbox,
    config: String,
    servers: Vec<WatchedServer>,
}

fn panel(seats: &[Seat]) -> Panel {
    let sandbox = Sandbox::new();
    let mut config = String::new();
    let mut servers = Vec::new();
    for (i, &(answer, delay)) in seats.iter().enumerate() {
        let server =
            WatchedServer::start(delay, openai_ok(&format!("Final answer: {answer}"), 10, 5));
        config.push_str(&format!(
            "[providers.p{i}]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"FAKE_KEY\"\n\n\
             [[participants]]\nprovider = \"p{i}\"\nmodel = \"m\"\nname = \"s{i}\"\n\n",
            server.url()
        ));
        servers.push(server);
    }
    let path = sandbox.write("panel.toml", &config);
    Panel {
        config: path.to_str().unwrap().to_string(),
        sandbox,
        servers,
    }
}

impl Panel {
    /// Runs `ask` with `flags`; the exit code, stdout and the wall time.
    fn ask(&self, flags: &[&str]) -> (i32, String, Duration) {
        let t0 = Instant::now();
        let out = self
            .sandbox
            .cmd()
            .env("FAKE_KEY", KEY)
            .args(["ask", "--seed", "3", "--config", &self.config])
            .args(flags)
            .arg("What is 2+2?")
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.code().is_some(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap(), stdout, t0.elapsed())
    }

    fn ask_json(&self, flags: &[&str]) -> (i32, Value, Duration) {
        let mut all = vec!["--json"];
        all.extend_from_slice(flags);
        let (code, stdout, wall) = self.ask(&all);
        let report = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}"));
        (code, report, wall)
    }
}

/// The round-0 trace entry of `name`.
fn entry<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["rounds"][0]["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["participant"] == name)
        .unwrap_or_else(|| panic!("no entry for {name}: {report:#}"))
}

/// Four seats answer "4" in 200 ms, the fifth would take 10 s.
const FOUR_AND_SLOW: [Seat; 5] = [
    ("4", FAST),
    ("4", FAST),
    ("4", FAST),
    ("4", FAST),
    ("4", Duration::from_secs(10)),
];

#[test]
fn four_agreeing_seats_are_final_without_the_slowest_whose_call_is_cancelled() {
    for strategy in ["metastable", "vote"] {
        let panel = panel(&FOUR_AND_SLOW);
        let (code, report, wall) = panel.ask_json(&["--strategy", strategy]);
        assert_eq!(code, 0, "{strategy}: {report:#}");
        assert_eq!(report["status"], "final", "{strategy}");
        assert_eq!(report["answer"], "4", "{strategy}");
        assert!(wall < Duration::from_secs(5), "{strategy}: took {wall:?}");
        assert_ne!(report["winner"], "s4", "{strategy}: a seat not awaited won");
        let slow = entry(&report, "s4");
        assert_eq!(slow["not_awaited"], true, "{strategy}: {slow:#}");
        assert!(slow["error"].is_null(), "neither a failure: {slow:#}");
        assert!(slow["answer"].is_null(), "nor an answer: {slow:#}");
        // Only a call not waited for says so: an answer's entry leaves the field out.
        let answered = report["rounds"][0]["participants"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| !e["key"].is_null());
        for e in answered {
            assert!(e.get("not_awaited").is_none(), "{e:#}");
        }
        // The provider saw the connection close long before its answer was due.
        let hangups = panel.servers[4].settled(1, Duration::from_secs(3));
        assert!(
            matches!(hangups.as_slice(), [Some(t)] if *t < Duration::from_secs(5)),
            "{strategy}: {hangups:?}"
        );
        assert_eq!(
            report["rounds_executed"], 0,
            "{strategy}: no sampling round"
        );
    }
}

#[test]
fn the_text_report_names_a_seat_not_awaited_not_needed() {
    let panel = panel(&FOUR_AND_SLOW);
    let (code, stdout, _) = panel.ask(&["--strategy", "vote"]);
    assert_eq!(code, 0, "{stdout}");
    let row = stdout
        .lines()
        .find(|l| l.contains("s4"))
        .unwrap_or_else(|| panic!("no row for s4: {stdout}"));
    assert!(row.trim_end().ends_with("not needed"), "{row}");
    assert!(!stdout.contains("Failed calls"), "{stdout}");
}

#[test]
fn wait_all_waits_for_the_slowest_seat() {
    let slow = Duration::from_millis(1500);
    let mut seats = FOUR_AND_SLOW;
    seats[4].1 = slow;
    let panel = panel(&seats);
    let (code, report, wall) = panel.ask_json(&["--strategy", "vote", "--wait-all"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["answer"], "4");
    assert!(wall >= slow, "took {wall:?}");
    let entry = entry(&report, "s4");
    assert!(entry.get("not_awaited").is_none(), "{entry:#}");
    assert_eq!(entry["key"], "4", "{entry:#}");
    assert_eq!(
        panel.servers[4].hangups(),
        [None],
        "the slow call was answered"
    );
}

#[test]
fn a_split_panel_waits_for_the_seat_that_decides_it() {
    let slow = Duration::from_millis(1500);
    // Two "4" and two "5" are in fast; the slow seat's answer decides the vote.
    let seats = [
        ("4", FAST),
        ("4", FAST),
        ("5", FAST),
        ("5", FAST),
        ("4", slow),
    ];
    let panel = panel(&seats);
    let (code, report, wall) = panel.ask_json(&["--strategy", "vote"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        (&report["status"], &report["answer"]),
        (&"final".into(), &"4".into())
    );
    assert!(wall >= slow, "took {wall:?}");
    let entry = entry(&report, "s4");
    assert!(entry.get("not_awaited").is_none(), "{entry:#}");
    assert_eq!(
        panel.servers[4].hangups(),
        [None],
        "the slow call was answered"
    );
}

#[test]
fn hanzo_waits_for_every_call() {
    let slow = Duration::from_millis(1500);
    let mut seats = FOUR_AND_SLOW;
    seats[4].1 = slow;
    let panel = panel(&seats);
    let (_, report, wall) = panel.ask_json(&["--strategy", "hanzo", "--rounds", "1"]);
    assert!(wall >= slow, "took {wall:?}: {report:#}");
    assert!(
        !serde_json::to_string(&report)
            .unwrap()
            .contains("not_awaited"),
        "{report:#}"
    );
}

#[test]
fn a_command_seat_not_needed_has_its_process_killed() {
    let sandbox = Sandbox::new();
    let pidfile = sandbox.path().join("slow.pid");
    let mut config = format!(
        "[providers.slow]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"echo $$ > {}; sleep 10; echo 'Final answer: 4'\"]\n\n",
        pidfile.display()
    );
    for i in 0..4 {
        config.push_str(&format!(
            "[[participants]]\nprovider = \"mock\"\nname = \"s{i}\"\nsleep = true\n\
             script = [ {{ output = \"Final answer: 4\", ms = 200 }} ]\n\n"
        ));
    }
    config.push_str("[[participants]]\nprovider = \"slow\"\nmodel = \"m\"\nname = \"slow\"\n");
    let path = sandbox.write("panel.toml", &config);
    let t0 = Instant::now();
    let out = sandbox
        .cmd()
        .args(["ask", "--json", "--strategy", "vote", "--config"])
        .arg(&path)
        .arg("What is 2+2?")
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let wall = t0.elapsed();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["answer"], "4");
    assert!(wall < Duration::from_secs(5), "took {wall:?}");
    assert_eq!(entry(&report, "slow")["not_awaited"], true, "{report:#}");
    // The command's shell started, and is gone well before its sleep would end.
    let pid = std::fs::read_to_string(&pidfile).expect("the command started");
    let alive = || {
        std::process::Command::new("kill")
            .args(["-0", pid.trim()])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let end = Instant::now() + Duration::from_secs(3);
    while alive() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(), "the slow command still runs");
}
