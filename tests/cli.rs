//! The command line a newcomer meets: `check` reports every problem with its location,
//! every command has help with examples, keys are created and shown once.

mod common;

use common::*;

/// A bad type name, an unknown template, a missing script file and a script syntax
/// error: all four with `file:line:col`, exit 1.
#[test]
fn check_reports_all_four_problems_with_locations_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "scripts/broken.rhai",
        "let x = 1;\nlet y = (;\n",
    );
    write(
        dir.path(),
        "switchyard.toml",
        r#"[sites.s]
listen = "127.0.0.1:1"
token = { env = "T" }

[templates.Tank]
attributes = { Level = "Flota" }
scripts = { Fill = "scripts/broken.rhai", Drain = "scripts/missing.rhai" }

[instances.T-1]
template = "Tnak"
site = "s"
"#,
    );
    let config = dir.path().join("switchyard.toml");
    let (code, _, err) = cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    let file = config.display().to_string();
    for expected in [
        format!("{file}:6:25: templates.Tank.attributes.Level: unknown type `Flota`"),
        format!("{file}:7:51: script file"),
        format!("{file}:10:12: instances.T-1: unknown template `Tnak`"),
        "scripts/broken.rhai:2:10: ".to_string(),
    ] {
        assert!(err.contains(&expected), "missing `{expected}` in:\n{err}");
    }
    assert!(err.contains("4 error(s)"), "{err}");
}

#[test]
fn check_accepts_the_example_plant() {
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/plant/switchyard.toml"
    );
    let (code, out, err) = cli(&["check", "--config", config]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok (1 site(s), 4 API method(s)"), "{out}");
    assert!(
        err.contains("warning:"),
        "literal secrets in the example are warned about: {err}"
    );
}

#[test]
fn every_command_has_help_with_examples() {
    for command in [
        vec!["dev"],
        vec!["central"],
        vec!["site"],
        vec!["check"],
        vec!["key"],
        vec!["parked"],
        vec!["failures"],
        vec!["bench"],
    ] {
        let mut args = command.clone();
        args.push("--help");
        let (code, out, _) = cli(&args);
        assert_eq!(code, 0, "{command:?}");
        assert!(
            out.contains("Example"),
            "{command:?} --help has no example:\n{out}"
        );
    }
}

#[test]
fn key_new_prints_the_key_once_and_stores_only_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "switchyard.toml",
        "[sites.s]\nlisten = \"127.0.0.1:1\"\ntoken = \"site-token-0001\"\n",
    );
    let config = dir.path().join("switchyard.toml");
    let (code, out, err) = cli(&["key", "new", "mes", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let key = out.trim();
    assert!(key.starts_with("sy_") && key.len() >= 40, "{out}");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains(&hash(key)) && !text.contains(key));
    let (code, _, err) = cli(&["key", "new", "mes", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn failures_cli_reads_the_log() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "switchyard.toml",
        "[central]\ndata_dir = \"data\"\n",
    );
    write(
        dir.path(),
        "data/failures.jsonl",
        "{\"time\":\"2026-11-28T10:00:00Z\",\"method\":\"M\",\"key\":\"mes\",\"incident\":\"i-1\",\"status\":500,\"code\":\"SCRIPT_ERROR\",\"detail\":\"boom\",\"duration_ms\":3}\n",
    );
    let config = dir.path().join("switchyard.toml");
    let (code, out, _) = cli(&["failures", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("i-1") && out.contains("boom"), "{out}");
    let (_, out, _) = cli(&[
        "failures",
        "--config",
        config.to_str().unwrap(),
        "--since",
        "2026-11-28T11:00:00Z",
    ]);
    assert_eq!(out.trim(), "no failures recorded");
}

/// An empty admin token (here from an empty environment variable) is a config error at
/// `check` and at start — never "admin without auth" (SPEC §7).
#[test]
fn an_empty_admin_token_is_refused_by_check_and_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write(
        dir.path(),
        "switchyard.toml",
        &format!(
            "[central]\nlisten = \"127.0.0.1:{port}\"\nadmin_token = {{ env = \"SWITCHYARD_TEST_ADMIN_TOKEN\" }}\n\n[sites.s]\nlisten = \"127.0.0.1:1\"\ntoken = \"site-token-0001\"\n"
        ),
    );
    let config = dir.path().join("switchyard.toml");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(args)
            .env("SWITCHYARD_TEST_ADMIN_TOKEN", "")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = run(&["check", "--config", config.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("central.admin_token: the token is empty"),
        "{err}"
    );
    let out = run(&["central", "--config", config.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "central must not start: {err}");
    assert!(
        err.contains("central.admin_token: the token is empty"),
        "{err}"
    );
}

/// The example's tokens work with `dev` and on loopback, but a `site` or `central`
/// listening beyond loopback with one refuses to start.
#[test]
fn example_tokens_are_refused_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let (site_port, central_port) = (free_port(), free_port());
    write(
        dir.path(),
        "switchyard.toml",
        &format!(
            "[central]\nlisten = \"0.0.0.0:{central_port}\"\nadmin_token = \"dev-admin-token\"\n\n[sites.s]\nlisten = \"0.0.0.0:{site_port}\"\ntoken = \"dev-site-token\"\n"
        ),
    );
    let config = dir.path().join("switchyard.toml");
    let config = config.to_str().unwrap();
    let (code, _, err) = cli(&["site", "--config", config, "--site", "s"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("sites.s.token is the token of the shipped example"),
        "{err}"
    );
    let (code, _, err) = cli(&["central", "--config", config]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("central.admin_token is the token of the shipped example"),
        "{err}"
    );
}
