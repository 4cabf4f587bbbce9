//! `providers` at the edges: what a check call brings back is scrubbed of every secret of
//! the panel (not only the seat's own key), and the table shows names, endpoints and
//! errors with their control characters as visible escapes.

use crate::common::*;
use serde_json::Value;

const KEY_A: &str = "sk-seat-a-5f0c2e9d71";
const KEY_B: &str = "sk-seat-b-83ad4410c6";
const PASSWORD: &str = "pw-9e3b77d2aa";

/// Runs `providers --check` (plus `extra`) on the config text, both keys set.
fn check(sandbox: &Sandbox, config: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let path = sandbox.write("panel.toml", config);
    let out = sandbox
        .cmd()
        .env("KEY_A", KEY_A)
        .env("KEY_B", KEY_B)
        .args(["providers", "--check"])
        .args(extra)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Seat `a` behind `user:PASSWORD@`, seat `b` plain; both on `server`.
fn two_seats(server: &TestServer) -> String {
    let host = server.url().replace("http://", "");
    format!(
        "[providers.a]\nkind = \"openai\"\nbase_url = \"http://me:{PASSWORD}@{host}/v1\"\napi_key_env = \"KEY_A\"\n\n\
         [providers.b]\nkind = \"openai\"\nbase_url = \"http://{host}/v1\"\napi_key_env = \"KEY_B\"\n\n\
         [[participants]]\nprovider = \"a\"\nmodel = \"m\"\n\n\
         [[participants]]\nprovider = \"b\"\nmodel = \"m\"\n"
    )
}

#[test]
fn a_check_answer_quoting_another_seats_key_or_a_url_password_is_scrubbed() {
    // Each seat's answer echoes its own authorization, seat a's key and the password.
    let server = TestServer::start(|req, _| {
        let auth = req.header("authorization").unwrap_or("none").to_string();
        openai_ok(&format!("{auth} {KEY_A} {PASSWORD}"), 3, 1)
    });
    let sb = Sandbox::new();
    let (code, stdout, stderr) = check(&sb, &two_seats(&server), &["--json"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(server.count(), 2);
    for secret in [KEY_A, KEY_B, PASSWORD] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} shown:\n{stdout}{stderr}"
        );
    }
    let panel: Value = serde_json::from_str(&stdout).unwrap();
    // Seat a's credentials go as Basic (from the URL), b's as Bearer.
    for (seat, scheme) in panel["seats"]
        .as_array()
        .unwrap()
        .iter()
        .zip(["Basic", "Bearer"])
    {
        assert_eq!(
            seat["check"]["answer"],
            format!("{scheme} <redacted> <redacted> <redacted>"),
            "{seat}"
        );
    }
}

#[test]
fn a_check_error_quoting_another_seats_key_or_a_url_password_is_scrubbed() {
    let server = TestServer::always(openai_error(
        401,
        &format!("keys {KEY_A} and {PASSWORD} are not valid here"),
        "invalid_request_error",
        Some("invalid_api_key"),
    ));
    let sb = Sandbox::new();
    let (code, stdout, stderr) = check(&sb, &two_seats(&server), &[]);
    assert_eq!(code, Some(3), "{stdout}{stderr}");
    for secret in [KEY_A, KEY_B, PASSWORD] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} shown:\n{stdout}{stderr}"
        );
    }
    assert_eq!(
        stdout
            .matches("keys <redacted> and <redacted> are not valid here")
            .count(),
        2,
        "{stdout}"
    );
}

#[test]
fn the_table_shows_control_characters_in_names_and_errors_as_escapes() {
    let server = TestServer::always(openai_error(
        400,
        "bad\u{1b}[2J request\r✔ FINAL\nforged row",
        "invalid_request_error",
        None,
    ));
    let sb = Sandbox::new();
    let config = format!(
        "[providers.a]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"KEY_A\"\n\n\
         [[participants]]\nprovider = \"a\"\nmodel = \"m\"\nname = \"evil\\u001b]0;title\\u0007\"\n",
        server.url()
    );
    let (code, stdout, stderr) = check(&sb, &config, &[]);
    assert_eq!(code, Some(3), "{stdout}{stderr}");
    assert!(
        !stdout.contains(['\u{1b}', '\u{7}', '\r']),
        "raw control characters:\n{stdout:?}"
    );
    assert!(stdout.contains("evil\\u{1b}]0;title\\u{7}"), "{stdout}");
    assert!(
        stdout.contains("bad\\u{1b}[2J request\\u{d}✔ FINAL forged row"),
        "{stdout}"
    );
    // One header and one seat: the error's line break starts no row of its own.
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
}

#[test]
fn token_counts_read_the_same_in_the_check_table_and_the_verbose_log() {
    let server = TestServer::always(openai_ok("Final answer: 4", 12, 3));
    let sb = Sandbox::new();
    let config = format!(
        "[providers.a]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"KEY_A\"\n\n\
         [[participants]]\nprovider = \"a\"\nmodel = \"m\"\n",
        server.url()
    );
    let (code, stdout, stderr) = check(&sb, &config, &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains(", 12 in / 3 out tokens"), "{stdout}");

    let path = sb.write("panel.toml", &config);
    let out = sb
        .cmd()
        .env("KEY_A", KEY_A)
        .args(["ask", "-v", "--json", "--config"])
        .arg(&path)
        .arg("q")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("[round 0] a:m (m): ok in "))
        .unwrap_or_else(|| panic!("no call line:\n{stderr}"));
    assert!(
        line.ends_with(" ms, 12 in / 3 out tokens, 15 chars"),
        "{line}"
    );
}
