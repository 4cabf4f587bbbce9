//! The edges of configuration and the command line, against the real binary: numbers out
//! of range name the flag or the key they came from (exit 2, nothing sent) instead of
//! panicking; a hostile environment or a closed stderr never crashes a run; config paths,
//! `providers`, `--transcript`, completions, the manual page and the README agree with
//! what the binary does.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;
use serde_json::Value;

const KEY: &str = "sk-test-9d2f61c0e4ab";

/// A config whose provider `local` is the test server, keyed by LOCAL_KEY.
fn config(server: &TestServer, extra: &str) -> String {
    format!(
        "[providers.local]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"LOCAL_KEY\"\n{extra}\n",
        server.url()
    )
}

/// Two scripted seats that agree: a run that needs no network.
const MOCK_PANEL: &str = "[[participants]]\nprovider = \"mock\"\nname = \"a\"\nmodel = \"Final answer: 4\"\n\n\
[[participants]]\nprovider = \"mock\"\nname = \"b\"\nmodel = \"Final answer: 4\"\n";

/// The binary with the sandbox's cleared environment, as a std command (for tests that
/// set up stdout or stderr themselves).
fn std_cmd(sandbox: &Sandbox) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("llm-consensus"));
    cmd.env_clear()
        .env("HOME", sandbox.path())
        .env("XDG_CONFIG_HOME", sandbox.config_dir())
        .env("XDG_STATE_HOME", sandbox.state_dir())
        .env("NO_COLOR", "1")
        .current_dir(sandbox.path())
        .stdin(Stdio::null());
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd
}

/// Asserts a one-line configuration error (exit 2, nothing on stdout) containing each needle.
fn assert_config_error(out: &std::process::Output, what: &str, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
    assert!(stderr.starts_with("error: "), "{what}: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "{what}: one line: {stderr}"
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{what}: {needle:?} not in {stderr}"
        );
    }
    assert!(out.stdout.is_empty(), "{what}: stdout is empty");
    stderr
}

#[test]
fn numbers_out_of_range_exit_2_naming_the_flag_or_the_key_and_send_nothing() {
    let server = TestServer::always(openai_ok("Final answer: 4", 1, 1));
    let sandbox = Sandbox::new();
    let seat = "[[participants]]\nprovider = \"local\"\nmodel = \"m\"\n";
    // (flags, extra config, what the message must contain)
    let cases: Vec<(Vec<&str>, String, Vec<&str>)> = vec![
        // Each of these panicked (exit 101) before.
        (
            vec!["--timeout", "1e20"],
            seat.into(),
            vec!["--timeout", "3600 seconds", "got 100000000000000000000"],
        ),
        (
            vec![],
            format!("[consensus]\ntimeout = 1e20\n{seat}"),
            vec!["[consensus] timeout", "3600 seconds"],
        ),
        (
            vec![],
            format!("max_concurrency = 18446744073709551615\n{seat}"),
            vec!["[providers.local] max_concurrency", "between 1 and 1024"],
        ),
        // Each of these blamed the wrong thing before.
        (
            vec![],
            format!("[consensus]\nalpha = 5\n{seat}"),
            vec!["[consensus] alpha must be between 0 and 1, got 5"],
        ),
        (
            vec!["--temperature=-1"],
            seat.into(),
            vec!["--temperature must be between 0 and 2, got -1"],
        ),
        (
            vec!["--deadline", "1e9"],
            seat.into(),
            vec!["--deadline must be more than 0 and at most 86400 seconds, got 1000000000"],
        ),
        (
            vec![],
            format!("[consensus]\nstrategy = \"bft\"\nfaults = 1\n{seat}count = 3\n"),
            vec!["[consensus] faults = 1: ", "needs at least 4 participants"],
        ),
        // Each of these was accepted before.
        (
            vec!["--beta2", "80"],
            seat.into(),
            vec!["--beta2 must be between 0 and 1, got 80"],
        ),
        (
            vec![],
            format!("[consensus]\nbeta_1 = 2.5\n{seat}"),
            vec!["[consensus] beta_1 must be between 0 and 2"],
        ),
        (
            vec!["-k", "0"],
            seat.into(),
            vec!["-k must be between 1 and 100, got 0"],
        ),
        (
            vec!["--max-tokens", "0"],
            seat.into(),
            vec!["--max-tokens must be between 1 and 1000000, got 0"],
        ),
        (
            vec![],
            format!("{seat}count = 3\nweight = 1e308\n"),
            vec!["[[participants]] #1 weight must be more than 0 and at most 1000"],
        ),
        (
            vec![],
            format!("{seat}max_tokens = 0\n"),
            vec!["[[participants]] #1 max_tokens must be between 1 and 1000000"],
        ),
        (
            vec!["--retries", "1000"],
            seat.into(),
            vec!["--retries must be between 0 and 10"],
        ),
        (
            vec!["--tolerance", "2"],
            seat.into(),
            vec!["--tolerance must be between 0 and 1"],
        ),
        (
            vec!["--round-timeout", "inf"],
            seat.into(),
            vec!["--round-timeout must be more than 0 and at most 3600 seconds"],
        ),
        (
            vec!["--max-cost=-1"],
            seat.into(),
            vec!["--max-cost must be more than 0 and at most 1000000 USD"],
        ),
    ];
    for (flags, extra, needles) in cases {
        let path = sandbox.write("providers.toml", &config(&server, &extra));
        let out = sandbox
            .cmd()
            .env("LOCAL_KEY", KEY)
            .arg("ask")
            .arg("--config")
            .arg(&path)
            .args(&flags)
            .arg("Q?")
            .output()
            .unwrap();
        let stderr = assert_config_error(&out, &format!("{flags:?} {extra:?}"), &needles);
        assert!(
            flags.is_empty() || !stderr.contains("[[participants]]"),
            "{flags:?}: a flag is not blamed on a participant: {stderr}"
        );
    }
    assert_eq!(server.count(), 0, "nothing is sent");
}

#[test]
fn a_mock_latency_of_infinity_is_a_config_error_not_a_crash() {
    let sandbox = Sandbox::new();
    let path = sandbox.write(
        "providers.toml",
        "[[participants]]\nprovider = \"mock\"\nsleep = true\nscript = [ { output = \"Final answer: 1\", ms = inf } ]\n",
    );
    let out = sandbox
        .cmd()
        .args(["ask", "--config"])
        .arg(&path)
        .arg("Q?")
        .output()
        .unwrap();
    assert_config_error(
        &out,
        "ms = inf",
        &["[[participants]] #1 script[0].ms must be between 0 and 3600000 ms, got inf"],
    );
}

#[cfg(unix)]
#[test]
fn an_environment_variable_that_is_not_utf8_does_not_crash_the_run() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    let sandbox = Sandbox::new();
    let path = sandbox.write("providers.toml", MOCK_PANEL);
    let bad = OsStr::from_bytes(b"\xff\xfe");
    let out = std_cmd(&sandbox)
        .env("BAD", bad)
        .args(["ask", "--json", "--config"])
        .arg(&path)
        .arg("Q?")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["answer"], "4");

    // A key variable that is set but unusable says so, instead of "set it".
    let server = TestServer::always(openai_ok("Final answer: 4", 1, 1));
    let path = sandbox.write("local.toml", &config(&server, ""));
    let out = std_cmd(&sandbox)
        .env("LOCAL_KEY", bad)
        .args(["ask", "-m", "local:m", "--config"])
        .arg(&path)
        .arg("Q?")
        .output()
        .unwrap();
    assert_config_error(&out, "LOCAL_KEY not UTF-8", &["LOCAL_KEY", "not UTF-8"]);
    assert_eq!(server.count(), 0);

    // Variables the HTTP client reads (proxies) are not UTF-8 either: the call still goes.
    let out = std_cmd(&sandbox)
        .env("LOCAL_KEY", KEY)
        .env("http_proxy", bad)
        .env("ALL_PROXY", bad)
        .env("NO_PROXY", bad)
        .args(["ask", "-m", "local:m", "--json", "--config"])
        .arg(&path)
        .arg("Q?")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.count(), 1);
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_stderr_never_turns_an_error_or_a_run_into_a_crash() {
    let sandbox = Sandbox::new();
    let full = || Stdio::from(std::fs::File::create("/dev/full").expect("open /dev/full"));
    // A configuration error whose message cannot be written is still exit 2.
    let out = std_cmd(&sandbox)
        .args(["ask", "--alpha", "7", "Q?"])
        .stderr(full())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    // -v writes a header and a line per call to stderr: the run still finishes.
    let path = sandbox.write("providers.toml", MOCK_PANEL);
    let out = std_cmd(&sandbox)
        .args(["ask", "-v", "--json", "--config"])
        .arg(&path)
        .arg("Q?")
        .stderr(full())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "final");
}

#[test]
fn a_closed_stderr_never_fails_the_run() {
    let sandbox = Sandbox::new();
    let path = sandbox.write("providers.toml", MOCK_PANEL);
    let mut child = std_cmd(&sandbox)
        .args(["ask", "-v", "--json", "--config"])
        .arg(&path)
        .arg("Q?")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the first line, like `2>&1 | head -n0`.
    drop(child.stderr.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["answer"], "4");
}

#[test]
fn config_paths_that_are_directories_or_empty_say_what_is_wrong() {
    let sandbox = Sandbox::new();
    std::fs::create_dir(sandbox.path().join("conf.d")).unwrap();
    let out = sandbox
        .cmd()
        .args(["ask", "--config", "conf.d", "Q?"])
        .output()
        .unwrap();
    let stderr = assert_config_error(&out, "a directory", &["conf.d", "is a directory"]);
    assert!(!stderr.contains("not found"), "{stderr}");

    // The same through the variable.
    let out = sandbox
        .cmd()
        .env("LLM_CONSENSUS_CONFIG", "conf.d")
        .args(["ask", "Q?"])
        .output()
        .unwrap();
    assert_config_error(
        &out,
        "a directory by variable",
        &["is a directory", "$LLM_CONSENSUS_CONFIG"],
    );

    // An empty file, or /dev/null: the file was found and has no participants.
    let empty = sandbox.write("empty.toml", "");
    for path in [empty.as_path(), Path::new("/dev/null")] {
        if !path.exists() {
            continue;
        }
        let out = sandbox
            .cmd()
            .args(["ask", "--config"])
            .arg(path)
            .arg("Q?")
            .output()
            .unwrap();
        let stderr = assert_config_error(
            &out,
            &path.display().to_string(),
            &[
                "defines no participants",
                "[[participants]]",
                "-m PROVIDER:MODEL",
            ],
        );
        assert!(
            !stderr.contains("not found") && !stderr.contains("write a config file"),
            "{stderr}"
        );
    }
}

#[test]
fn providers_shows_every_seat_whose_key_is_missing_then_exits_2() {
    let sandbox = Sandbox::new();
    for json in [false, true] {
        let mut cmd = sandbox.cmd();
        cmd.args([
            "providers",
            "-m",
            "anthropic:claude-x",
            "-m",
            "gemini:g",
            "-m",
            "groq:l",
        ]);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("ANTHROPIC_API_KEY"),
            "the first missing key: {stderr}"
        );
        if json {
            let panel: Value = serde_json::from_str(&stdout).unwrap();
            let seats = panel["seats"].as_array().unwrap();
            assert_eq!(seats.len(), 3, "{stdout}");
            assert!(seats.iter().all(|s| s["key_set"] == false), "{stdout}");
        } else {
            for needle in [
                "ANTHROPIC_API_KEY (not set)",
                "GOOGLE_API_KEY (not set)",
                "GROQ_API_KEY (not set)",
            ] {
                assert!(stdout.contains(needle), "{needle} in:\n{stdout}");
            }
        }
    }
}

#[test]
fn providers_masks_the_password_of_a_base_url() {
    let sandbox = Sandbox::new();
    let path = sandbox.write(
        "providers.toml",
        "[providers.proxy]\nkind = \"openai\"\nbase_url = \"http://alice:hunter2-secret@127.0.0.1:9/v1\"\n",
    );
    for json in [false, true] {
        let mut cmd = sandbox.cmd();
        cmd.args(["providers", "-m", "proxy:m", "--config"])
            .arg(&path);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{stdout}");
        assert!(
            !stdout.contains("hunter2"),
            "the password is shown:\n{stdout}"
        );
        assert!(
            stdout.contains("http://alice:***@127.0.0.1:9/v1"),
            "{stdout}"
        );
    }
}

#[test]
fn runs_have_a_default_deadline_that_flags_and_keys_change() {
    let sandbox = Sandbox::new();
    let header = |args: &[&str], config: &str| {
        let path = sandbox.write("providers.toml", config);
        let out = sandbox
            .cmd()
            .args(["ask", "-v", "--json", "--config"])
            .arg(&path)
            .args(args)
            .arg("Q?")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8(out.stderr)
            .unwrap()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        header(&[], MOCK_PANEL).contains("deadline 600 s"),
        "{}",
        header(&[], MOCK_PANEL)
    );
    let keyed = format!("[consensus]\ndeadline = 45\n{MOCK_PANEL}");
    assert!(header(&[], &keyed).contains("deadline 45 s"));
    assert!(header(&["--deadline", "2.5"], &keyed).contains("deadline 2.5 s"));
}

#[test]
fn a_transcript_path_that_cannot_be_written_is_refused_before_any_call() {
    let server = TestServer::always(openai_ok("Final answer: 4", 1, 1));
    let sandbox = Sandbox::new();
    let path = sandbox.write("providers.toml", &config(&server, ""));
    std::fs::create_dir(sandbox.path().join("out")).unwrap();
    for (transcript, needle) in [
        ("missing-dir/t.json", "does not exist"),
        ("out", "is a directory"),
    ] {
        let out = sandbox
            .cmd()
            .env("LOCAL_KEY", KEY)
            .args([
                "ask",
                "-m",
                "local:m",
                "--transcript",
                transcript,
                "--config",
            ])
            .arg(&path)
            .arg("Q?")
            .output()
            .unwrap();
        assert_config_error(&out, transcript, &["--transcript", needle]);
    }
    assert_eq!(server.count(), 0, "nothing is sent");

    // A good path is left alone by the check and written at the end.
    let out = sandbox
        .cmd()
        .env("LOCAL_KEY", KEY)
        .args([
            "ask",
            "-m",
            "local:m",
            "--transcript",
            "out/t.json",
            "--config",
        ])
        .arg(&path)
        .arg("Q?")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let names: Vec<_> = std::fs::read_dir(sandbox.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["t.json"], "no probe file is left behind");
}

#[test]
fn a_question_piped_on_stdin_loses_its_trailing_newline() {
    let server = TestServer::always(openai_ok("Final answer: 4", 1, 1));
    let sandbox = Sandbox::new();
    let path = sandbox.write("providers.toml", &config(&server, ""));
    for input in ["What is 2+2?\n", "What is 2+2?\r\n"] {
        let out = sandbox
            .cmd()
            .env("LOCAL_KEY", KEY)
            .args(["ask", "-m", "local:m", "--json", "--config"])
            .arg(&path)
            .write_stdin(input)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["prompt"], "What is 2+2?", "{input:?}");
    }
    let sent: Vec<String> = server
        .requests()
        .iter()
        .map(|r| {
            let messages = r.json()["messages"].as_array().unwrap().clone();
            messages.last().unwrap()["content"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(sent.iter().all(|m| m == "What is 2+2?"), "{sent:?}");
}

#[test]
fn completions_and_the_manual_are_generated_from_the_flags() {
    let sandbox = Sandbox::new();
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = sandbox.cmd().args(["completions", shell]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        for needle in ["llm-consensus", "beta1", "max-tokens", "metastable"] {
            assert!(script.contains(needle), "{shell}: {needle} missing");
        }
    }
    let out = sandbox
        .cmd()
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    let out = sandbox.cmd().arg("man").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH llm-consensus"),
        "{page}"
    );
    assert!(page.contains("providers") && page.contains("completions"));

    let out = sandbox.cmd().args(["man", "ask"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH llm-consensus-ask"), "{page}");
    assert!(page.contains("beta1") && page.contains("deadline"));

    let out = sandbox.cmd().args(["man", "nosuch"]).output().unwrap();
    assert_config_error(&out, "man nosuch", &["nosuch", "ask", "providers"]);
}

/// Every `--flag` that `--help` prints.
fn flags_in_help(sandbox: &Sandbox, command: &str) -> Vec<String> {
    let out = sandbox.cmd().args([command, "--help"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    let mut flags: Vec<String> = help
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .flat_map(|l| l.split([' ', ',', '=', '[', '<']))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_string)
        .collect();
    flags.sort();
    flags.dedup();
    flags
}

#[test]
fn every_flag_in_help_is_documented_in_the_readme() {
    let readme = include_str!("../../README.md");
    let sandbox = Sandbox::new();
    let ask = flags_in_help(&sandbox, "ask");
    assert!(ask.len() > 30, "the help was read: {ask:?}");
    let mut flags = ask;
    flags.extend(flags_in_help(&sandbox, "providers"));
    let missing: Vec<&String> = flags
        .iter()
        .filter(|f| !["--help", "--version"].contains(&f.as_str()))
        .filter(|f| !readme.contains(&format!("`{f}")))
        .collect();
    assert!(missing.is_empty(), "flags not in README.md: {missing:?}");
}

/// The keys a config table accepts, from the error an unknown key gets (which lists them).
fn accepted_keys(sandbox: &Sandbox, table: &str) -> Vec<String> {
    let path = sandbox.write("keys.toml", &format!("{table}\nnot_a_key = 1\n"));
    let out = sandbox
        .cmd()
        .args(["ask", "--config"])
        .arg(&path)
        .arg("Q?")
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("not_a_key"), "{stderr}");
    // "unknown field `not_a_key`, expected one of `a`, `b`, ..."
    let keys: Vec<String> = stderr
        .split('`')
        .skip(3)
        .step_by(2)
        .map(str::to_string)
        .collect();
    assert!(keys.len() > 5, "{table}: {stderr}");
    keys
}

#[test]
fn every_config_key_is_in_the_example_config_and_consensus_keys_in_the_readme() {
    let example = include_str!("../../providers.example.toml");
    let readme = include_str!("../../README.md");
    let sandbox = Sandbox::new();
    let consensus = accepted_keys(&sandbox, "[consensus]");
    assert!(consensus.len() > 15, "{consensus:?}");
    for key in &consensus {
        assert!(
            readme.contains(&format!("`{key}`")),
            "{key} not in README.md"
        );
    }
    let tables = ["[providers.x]", "[[participants]]\nprovider = \"mock\""];
    let others = tables.iter().flat_map(|t| accepted_keys(&sandbox, t));
    for key in consensus.iter().cloned().chain(others) {
        assert!(
            example.contains(&format!("{key} =")),
            "{key} not in providers.example.toml"
        );
    }
}

#[cfg(unix)]
#[test]
fn term_dumb_gets_no_colour_on_a_terminal() {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};

    let sandbox = Sandbox::new();
    let path = sandbox.write("providers.toml", MOCK_PANEL);
    let report_on_a_terminal = |term: &str| -> String {
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(name.to_str().unwrap())
            .unwrap();
        let mut child = std_cmd(&sandbox)
            .env_remove("NO_COLOR")
            .env("TERM", term)
            .args(["ask", "--config"])
            .arg(&path)
            .arg("Q?")
            .stdout(Stdio::from(slave))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The slave end now belongs to the child alone: reads end when it exits.
        let mut master = std::fs::File::from(master);
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            // Linux reports EIO once the last slave descriptor is closed.
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            out
        });
        assert_eq!(child.wait().unwrap().code(), Some(0));
        String::from_utf8(reader.join().unwrap()).unwrap()
    };
    let coloured = report_on_a_terminal("xterm-256color");
    assert!(
        coloured.contains("FINAL") && coloured.contains("\x1b["),
        "{coloured:?}"
    );
    let plain = report_on_a_terminal("dumb");
    assert!(plain.contains("FINAL"), "{plain:?}");
    assert!(!plain.contains("\x1b["), "TERM=dumb: {plain:?}");
}

/// Two priced seats on `seats` and the providers `free` (unpriced) and `groq` (priced only
/// by the bundled table), both on `judge`.
fn synthesizer_panel(
    sandbox: &Sandbox,
    seats: &TestServer,
    judge: &TestServer,
    extra: &str,
) -> std::path::PathBuf {
    sandbox.write(
        "panel.toml",
        &format!(
            "{extra}\n[providers.a]\nkind = \"openai\"\nbase_url = \"{}\"\nprice = {{ input = 1.0, output = 1.0 }}\n\n\
             [providers.free]\nkind = \"openai\"\nbase_url = \"{}\"\n\n\
             [providers.groq]\nbase_url = \"{}\"\n\n\
             [[participants]]\nprovider = \"a\"\nname = \"a\"\nmodel = \"m\"\n\n\
             [[participants]]\nprovider = \"a\"\nname = \"b\"\nmodel = \"m\"\n",
            seats.url(),
            judge.url(),
            judge.url()
        ),
    )
}

#[test]
fn an_unpriced_synthesizer_under_max_cost_is_a_config_error() {
    let seats = TestServer::always(openai_ok("Final answer: 4", 10, 5));
    let judge = TestServer::always(openai_ok("Four.\nDissent: none", 10, 5));
    let sb = Sandbox::new();
    let cfg = synthesizer_panel(&sb, &seats, &judge, "");
    let out = sb
        .cmd()
        .args([
            "ask",
            "--synthesize",
            "free:m",
            "--max-cost",
            "1",
            "--config",
        ])
        .arg(&cfg)
        .arg("q")
        .output()
        .unwrap();
    assert_config_error(
        &out,
        "flags",
        &[
            "--max-cost needs a price for the synthesizer",
            "--synthesize free:m has none",
            "price = { input = USD, output = USD }",
            "[providers.free]",
        ],
    );
    // The same from the config file names its keys.
    let cfg = synthesizer_panel(
        &sb,
        &seats,
        &judge,
        "[consensus]\nmax_cost = 1\nsynthesize = \"free:m\"\n",
    );
    let out = sb
        .cmd()
        .args(["ask", "--config"])
        .arg(&cfg)
        .arg("q")
        .output()
        .unwrap();
    assert_config_error(
        &out,
        "keys",
        &[
            "[consensus] max_cost needs",
            "[consensus] synthesize free:m has none",
        ],
    );
    assert_eq!((seats.count(), judge.count()), (0, 0), "nothing is sent");
}

#[test]
fn a_synthesizer_takes_its_price_from_the_bundled_table_as_seats_do() {
    let seats = TestServer::always(openai_ok("Final answer: 4", 10, 5));
    let judge = TestServer::always(openai_ok("Four.\nDissent: none", 1_000_000, 1_000_000));
    let sb = Sandbox::new();
    let cfg = synthesizer_panel(&sb, &seats, &judge, "");
    let out = sb
        .cmd()
        .env("GROQ_API_KEY", KEY)
        .args([
            "ask",
            "--json",
            "--seed",
            "1",
            "--max-cost",
            "1",
            "--config",
        ])
        .arg(&cfg)
        .args(["--synthesize", "groq:llama-3.1-8b-instant", "q"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["synthesis_source"], "synthesizer", "{report:#}");
    assert_eq!(judge.count(), 1);
    // Seats: 2 × (10 + 5) tokens at $1 per million; synthesizer: a million tokens each
    // way at the bundled $0.05 / $0.08.
    let cost = report["usage"]["cost_usd"].as_f64().unwrap();
    assert!((cost - (30e-6 + 0.13)).abs() < 1e-9, "{report:#}");
}

/// Found by the config property test: 3f+1 overflowed for a huge `--faults`.
#[test]
fn a_huge_fault_count_is_a_config_error_not_a_crash() {
    let sandbox = Sandbox::new();
    let out = sandbox
        .cmd()
        .args([
            "ask",
            "--strategy",
            "bft",
            "--faults",
            "9223372036854775807",
        ])
        .args(["-m", "mock:x@4", "q"])
        .output()
        .unwrap();
    assert_config_error(
        &out,
        "huge --faults",
        &["--faults 9223372036854775807 needs"],
    );
}

#[test]
fn a_configured_header_that_the_key_would_also_set_is_refused_and_alone_sent_as_written() {
    let server = TestServer::always(openai_ok("Final answer: 4", 5, 2));
    let sb = Sandbox::new();
    let headers = "headers = { authorization = \"Token gateway-7\" }";
    let cfg = sb.write("p.toml", &config(&server, headers));
    let args = [
        "ask",
        "--config",
        cfg.to_str().unwrap(),
        "-m",
        "local:m",
        "2+2?",
    ];
    // With the key set, two Authorization headers would go out: a config error.
    let out = std_cmd(&sb)
        .env("LOCAL_KEY", KEY)
        .args(args)
        .output()
        .unwrap();
    assert_config_error(
        &out,
        "header and key",
        &[
            "[providers.local] headers.authorization",
            "Authorization header already",
        ],
    );
    assert!(server.requests().is_empty(), "nothing is sent");
    // Without a key, the configured header is the one Authorization header sent.
    let no_key = config(&server, headers).replace("api_key_env = \"LOCAL_KEY\"\n", "");
    let cfg = sb.write("p.toml", &no_key);
    let args = [
        "ask",
        "--config",
        cfg.to_str().unwrap(),
        "-m",
        "local:m",
        "2+2?",
    ];
    let out = std_cmd(&sb).args(args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let request = &server.requests()[0];
    let sent: Vec<&str> = request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(sent, ["Token gateway-7"]);
}
