//! The Notification Service end to end against the aiosmtpd fixture (SPEC §5,
//! `[6.*]`, `CD-NS-*`): classification of SMTP replies, parking, OAuth2 token life
//! (with an in-process token endpoint), TLS, the connection limit, crash safety.

mod common;

use common::*;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "m365-client-secret-5521";

/// Replaces the `[smtp]` section of a test plant (it is last but for the lists).
fn set_smtp(plant: &TestPlant, smtp: &str) {
    let text = std::fs::read_to_string(&plant.config).unwrap();
    let start = text.find("[smtp]").unwrap();
    let end = text.find("[notification_lists.Operators]").unwrap();
    std::fs::write(
        &plant.config,
        format!("{}{smtp}\n{}", &text[..start], &text[end..]),
    )
    .unwrap();
}

fn plain_smtp(port: u16, retry: &str) -> String {
    format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"scada@plant.example\"\nauth = {{ type = \"none\" }}\ntimeout = \"5s\"\nmax_connections = 3\nretry = {retry}\n"
    )
}

async fn mail(plant: &TestPlant, subject: &str) -> Value {
    plant
        .run(
            "T-1",
            "Mail",
            json!({ "list": "Operators", "subject": subject, "message": "body" }),
        )
        .await
}

/// SMTP 5xx at RCPT or DATA → an error to the script, nothing buffered (`CD-NS-4`).
#[tokio::test(flavor = "multi_thread")]
async fn smtp_5xx_is_an_error_to_the_script_and_nothing_is_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let Some(smtp) = Smtp::start(&dir.path().join("smtp"), 0, &[]) else {
        return;
    };
    let mut plant = TestPlant::new(&Peers {
        smtp_port: smtp.port,
        ..Peers::default()
    });
    plant.start().await;
    for (key, reply) in [
        ("rcpt_reply", "550 5.1.1 no such user"),
        ("data_reply", "554 5.7.1 rejected"),
    ] {
        smtp.control(json!({ key: reply, "generation": key }));
        let r = mail(&plant, "refused").await;
        assert_eq!(r["error"]["class"], "permanent", "{key}: {r}");
        assert_eq!(
            r["error"]["status"],
            reply[..3].parse::<u64>().unwrap(),
            "{r}"
        );
    }
    assert_eq!(plant.counts("plant-a").await, (0, 0));
    assert!(smtp.messages().is_empty());
}

/// 421 and 451 are transient: buffered, then delivered once the server accepts
/// (`CD-NS-3`, `CD-NS-5`: throttling is a transient failure, not rate limiting).
#[tokio::test(flavor = "multi_thread")]
async fn smtp_421_and_451_are_buffered_and_delivered_later() {
    let dir = tempfile::tempdir().unwrap();
    let Some(smtp) = Smtp::start(&dir.path().join("smtp"), 0, &[]) else {
        return;
    };
    let mut plant = TestPlant::new(&Peers {
        smtp_port: smtp.port,
        ..Peers::default()
    });
    plant.start().await;
    smtp.control(json!({ "mail_reply": "421 4.7.0 throttled", "fail_count": 2, "generation": 1 }));
    assert_eq!(
        mail(&plant, "throttled").await["value"]["status"],
        "buffered"
    );
    smtp.control(json!({ "data_reply": "451 4.3.0 try later", "fail_count": 1, "generation": 2 }));
    assert_eq!(mail(&plant, "later").await["value"]["status"], "buffered");
    wait_until("both arrive", Duration::from_secs(30), || {
        smtp.messages().len() == 2
    })
    .await;
    wait_until_async("nothing pending", Duration::from_secs(10), || async {
        plant.counts("plant-a").await == (0, 0)
    })
    .await;
}

/// A server that always answers 4xx: the e-mail is parked after `max_retries`.
#[tokio::test(flavor = "multi_thread")]
async fn always_4xx_is_parked_after_max_retries() {
    let dir = tempfile::tempdir().unwrap();
    let Some(smtp) = Smtp::start(&dir.path().join("smtp"), 0, &[]) else {
        return;
    };
    let mut plant = TestPlant::new(&Peers::default());
    set_smtp(
        &plant,
        &plain_smtp(smtp.port, "{ max_retries = 2, interval = \"1s\" }"),
    );
    plant.start().await;
    smtp.control(json!({ "rcpt_reply": "452 4.2.2 mailbox full" }));
    assert_eq!(mail(&plant, "never").await["value"]["status"], "buffered");
    wait_until_async("parked", Duration::from_secs(20), || async {
        plant.counts("plant-a").await == (0, 1)
    })
    .await;
    let (_, out) = plant.parked_list_json("plant-a");
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["items"][0]["category"], "notification");
    assert_eq!(list["items"][0]["attempts"], 2);
    assert!(
        list["items"][0]["reason"].as_str().unwrap().contains("452"),
        "{list}"
    );
}

/// SMTP Basic authentication (`[6.4-4]`, SPEC §5): PLAIN when the server offers it,
/// LOGIN when it offers only that; a wrong password is a permanent error to the script
/// (535), nothing buffered.
#[tokio::test(flavor = "multi_thread")]
async fn smtp_basic_auth_plain_and_login_and_a_refused_password() {
    for (extra, mechanism) in [(None, "PLAIN"), (Some("PLAIN"), "LOGIN")] {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["--users", "scada-mailer:s3cret-pw", "--auth-required"];
        if let Some(excluded) = extra {
            args.extend(["--exclude-auth", excluded]);
        }
        let Some(smtp) = Smtp::start(&dir.path().join("smtp"), 0, &args) else {
            return;
        };
        for (password, delivered) in [("s3cret-pw", true), ("wrong-pw", false)] {
            let mut plant = TestPlant::new(&Peers::default());
            set_smtp(
                &plant,
                &plain_smtp(smtp.port, "{ max_retries = 2, interval = \"1m\" }").replace(
                    "auth = { type = \"none\" }",
                    &format!("auth = {{ type = \"basic\", username = \"scada-mailer\", password = \"{password}\" }}"),
                ),
            );
            plant.start().await;
            let r = mail(&plant, "authenticated").await;
            if delivered {
                assert_eq!(r["value"]["status"], "delivered", "{mechanism}: {r}");
            } else {
                assert_eq!(r["error"]["class"], "permanent", "{mechanism}: {r}");
                assert_eq!(r["error"]["status"], 535, "{mechanism}: {r}");
                assert_eq!(plant.counts("plant-a").await, (0, 0), "nothing buffered");
            }
        }
        let auths: Vec<Value> = smtp
            .events()
            .into_iter()
            .filter(|e| e["event"] == "auth")
            .collect();
        assert!(
            auths
                .iter()
                .all(|a| a["mechanism"] == mechanism && a["user"] == "scada-mailer"),
            "{auths:?}"
        );
        assert_eq!(
            auths
                .iter()
                .map(|a| a["ok"].as_bool().unwrap())
                .collect::<Vec<_>>(),
            vec![true, false],
            "{auths:?}"
        );
        let messages = smtp.messages();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0]["authenticated_as"], "scada-mailer");
    }
}

/// A server that accepts and never answers (not even the greeting): the SMTP timeout
/// cuts the attempt, which is transient — the e-mail is buffered, not lost.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_smtp_server_is_transient_and_the_email_is_buffered() {
    let (port, held) = stalled_listener(0);
    let mut plant = TestPlant::new(&Peers::default());
    set_smtp(
        &plant,
        &plain_smtp(port, "{ max_retries = 5, interval = \"1m\" }")
            .replace("timeout = \"5s\"", "timeout = \"1s\""),
    );
    plant.start().await;
    let started = std::time::Instant::now();
    let r = mail(&plant, "stalled").await;
    assert_eq!(r["value"]["status"], "buffered", "{r}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the attempt is cut at the 1 s SMTP timeout"
    );
    assert!(!held.lock().unwrap().is_empty(), "the server was reached");
    assert_eq!(plant.counts("plant-a").await, (1, 0));
    let log = plant
        .procs
        .iter()
        .find(|p| p.name == "plant-a")
        .unwrap()
        .log_text();
    assert!(
        log.contains("code=TIMEOUT"),
        "the attempt is recorded as a timeout:\n{log}"
    );
}

/// A full session pool makes the SMTP service not ready: with `max_connections = 1`
/// held by a stalled session, a second send waits for a slot no longer than its
/// timeout and is buffered; while it waits it opens no session of its own.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_session_pool_is_a_bounded_wait_and_the_email_is_buffered() {
    let (port, held) = stalled_listener(0);
    let mut plant = TestPlant::new(&Peers::default());
    set_smtp(
        &plant,
        &plain_smtp(port, "{ max_retries = 5, interval = \"1m\" }")
            .replace("timeout = \"5s\"", "timeout = \"2s\"")
            .replace("max_connections = 3", "max_connections = 1"),
    );
    plant.start().await;
    let started = std::time::Instant::now();
    let both = async { tokio::join!(mail(&plant, "first"), mail(&plant, "second")) };
    let watch = async {
        // Mid-way through the first attempt the second waits for the only slot.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        held.lock().unwrap().len()
    };
    let ((a, b), sessions_midway) = tokio::join!(both, watch);
    let elapsed = started.elapsed();
    assert_eq!(a["value"]["status"], "buffered", "{a}");
    assert_eq!(b["value"]["status"], "buffered", "{b}");
    assert_eq!(
        sessions_midway, 1,
        "while the only session is stalled, the other send waits for it and opens none"
    );
    assert!(
        elapsed < Duration::from_secs(4),
        "the wait for a slot counts against the 2 s timeout, it does not add to it: {elapsed:?}"
    );
    assert_eq!(plant.counts("plant-a").await, (2, 0));
}

/// STARTTLS and implicit TLS both deliver; the test certificate is trusted through
/// `smtp.ca_file` only.
#[tokio::test(flavor = "multi_thread")]
async fn starttls_and_implicit_tls_both_deliver() {
    let certs = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/certs");
    for mode in ["starttls", "tls"] {
        let dir = tempfile::tempdir().unwrap();
        let Some(smtp) = Smtp::start(
            &dir.path().join("smtp"),
            0,
            &[
                "--tls",
                mode,
                "--cert",
                &format!("{certs}/server.pem"),
                "--key",
                &format!("{certs}/server.key"),
            ],
        ) else {
            return;
        };
        let mut plant = TestPlant::new(&Peers::default());
        set_smtp(
            &plant,
            &format!(
                "[smtp]\nhost = \"localhost\"\nport = {}\ntls = \"{mode}\"\nfrom = \"scada@plant.example\"\nca_file = \"{certs}/ca.pem\"\ntimeout = \"5s\"\nretry = {{ max_retries = 1, interval = \"1s\" }}\n",
                smtp.port
            ),
        );
        plant.start().await;
        let r = mail(&plant, &format!("over {mode}")).await;
        assert_eq!(r["value"]["status"], "delivered", "{mode}: {r}");
        assert_eq!(smtp.messages()[0]["tls"], true, "{mode}");
    }
}

/// The server never sees more than `max_connections` sessions, however many scripts
/// send at once (`CD-NS-7`).
#[tokio::test(flavor = "multi_thread")]
async fn never_more_than_max_connections_sessions_under_200_concurrent_sends() {
    let dir = tempfile::tempdir().unwrap();
    let Some(smtp) = Smtp::start(&dir.path().join("smtp"), 0, &[]) else {
        return;
    };
    let mut plant = TestPlant::new(&Peers {
        smtp_port: smtp.port,
        ..Peers::default()
    });
    let text = std::fs::read_to_string(&plant.config)
        .unwrap()
        .replace("script_threads = 4", "script_threads = 16");
    std::fs::write(&plant.config, text).unwrap();
    plant.start().await;
    smtp.control(json!({ "delay_ms": 50 }));
    let port = plant.site_port("plant-a");
    let mut sends = Vec::new();
    for i in 0..200 {
        sends.push(tokio::spawn(async move {
            let r = http()
                .post(format!("http://127.0.0.1:{port}/cluster/call"))
                .bearer_auth(SITE_TOKEN)
                .json(&json!({ "instance": "T-1", "script": "Mail", "params": { "list": "Operators", "subject": format!("n{i}"), "message": "x" } }))
                .send()
                .await
                .unwrap();
            r.json::<Value>().await.unwrap()
        }));
    }
    for s in sends {
        let r = s.await.unwrap();
        assert!(r["value"]["value"]["status"].is_string(), "{r}");
    }
    wait_until("all 200 arrive", Duration::from_secs(60), || {
        smtp.messages().len() == 200
    })
    .await;
    let max = smtp
        .events()
        .iter()
        .filter_map(|e| e["max_concurrent"].as_u64())
        .max()
        .unwrap();
    eprintln!("max concurrent SMTP sessions seen: {max}");
    assert!(max <= 3, "the server saw {max} concurrent sessions");
}

/// Buffered e-mails survive `kill -9` of the site and are delivered after the restart.
#[tokio::test(flavor = "multi_thread")]
async fn buffered_notifications_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut smtp) = Smtp::start(&dir.path().join("smtp"), 0, &[]) else {
        return;
    };
    smtp.stop();
    let mut plant = TestPlant::new(&Peers {
        smtp_port: smtp.port,
        ..Peers::default()
    });
    plant.start().await;
    for i in 0..3 {
        assert_eq!(
            mail(&plant, &format!("kept {i}")).await["value"]["status"],
            "buffered"
        );
    }
    plant.kill("plant-a");
    smtp.restart();
    plant.start_site("plant-a");
    wait_until("all three arrive", Duration::from_secs(30), || {
        smtp.messages().len() == 3
    })
    .await;
}

/// An in-process OAuth2 token endpoint (`{authority}/{tenant}/oauth2/v2.0/token`).
#[derive(Clone, Default)]
struct TokenEndpoint {
    issued: Arc<Mutex<Vec<String>>>,
    forms: Arc<Mutex<Vec<String>>>,
    expires_in: Arc<Mutex<u64>>,
    refuse: Arc<Mutex<bool>>,
}

impl TokenEndpoint {
    async fn start(&self) -> String {
        *self.expires_in.lock().unwrap() = 3600;
        let me = self.clone();
        let app = axum::Router::new().route(
            "/{tenant}/oauth2/v2.0/token",
            axum::routing::post(move |body: String| {
                let me = me.clone();
                async move {
                    me.forms.lock().unwrap().push(body);
                    if *me.refuse.lock().unwrap() {
                        return (axum::http::StatusCode::UNAUTHORIZED, axum::Json(json!({ "error": "invalid_client" })));
                    }
                    let mut issued = me.issued.lock().unwrap();
                    let token = format!("tok-{}", issued.len() + 1);
                    issued.push(token.clone());
                    let expires_in = *me.expires_in.lock().unwrap();
                    (axum::http::StatusCode::OK, axum::Json(json!({ "access_token": token, "expires_in": expires_in, "token_type": "Bearer" })))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{addr}")
    }

    fn count(&self) -> usize {
        self.issued.lock().unwrap().len()
    }
}

fn oauth_smtp(port: u16, authority: &str) -> String {
    format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"scada@plant.example\"\nauth = {{ type = \"oauth2\", tenant = \"contoso\", client_id = \"app-1\", client_secret = \"{SECRET}\", authority = \"{authority}\", scope = \"https://outlook.office365.com/.default\" }}\ntimeout = \"5s\"\nretry = {{ max_retries = 3, interval = \"1s\" }}\n"
    )
}

fn xoauth2_strings(smtp: &Smtp) -> Vec<String> {
    smtp.events()
        .iter()
        .filter(|e| e["event"] == "auth" && e["mechanism"] == "XOAUTH2")
        .map(|e| e["xoauth2"].as_str().unwrap_or("").to_string())
        .collect()
}

/// OAuth2 client credentials: one token serves many sends; the XOAUTH2 string is
/// exactly `user=<from>\x01auth=Bearer <token>\x01\x01`; the request carries the
/// configured client and scope.
#[tokio::test(flavor = "multi_thread")]
async fn oauth2_fifty_sends_share_one_token_sent_with_xoauth2() {
    let dir = tempfile::tempdir().unwrap();
    let Some(smtp) = Smtp::start(&dir.path().join("smtp"), 0, &[]) else {
        return;
    };
    let tokens = TokenEndpoint::default();
    let authority = tokens.start().await;
    smtp.control(json!({ "valid_tokens": ["tok-1"] }));
    let mut plant = TestPlant::new(&Peers::default());
    set_smtp(&plant, &oauth_smtp(smtp.port, &authority));
    plant.start().await;
    for i in 0..50 {
        assert_eq!(
            mail(&plant, &format!("m{i}")).await["value"]["status"],
            "delivered"
        );
    }
    assert_eq!(tokens.count(), 1, "one token for 50 sends");
    assert_eq!(smtp.messages().len(), 50);
    let strings = xoauth2_strings(&smtp);
    assert!(!strings.is_empty());
    assert!(
        strings
            .iter()
            .all(|s| s == "user=scada@plant.example\u{1}auth=Bearer tok-1\u{1}\u{1}"),
        "{strings:?}"
    );
    let form = tokens.forms.lock().unwrap()[0].clone();
    for part in [
        "grant_type=client_credentials",
        "client_id=app-1",
        "scope=https%3A%2F%2Foutlook.office365.com%2F.default",
    ] {
        assert!(form.contains(part), "{form}");
    }
    assert!(
        !plant
            .procs
            .iter()
            .any(|p| p.log_text().contains(SECRET) || p.log_text().contains("tok-1")),
        "secret or token in a log"
    );
}

/// How long after the first send the second one goes, with tokens that live 2 s. The
/// sender stops using a token in the last fifth of its life (from 1.6 s after it was
/// fetched); 1.8 s after the first send lies inside that margin, 200 ms clear of its start
/// and of the token lapsing at 2 s. This is a time to be at, not an event to wait for.
const INTO_THE_LAST_FIFTH: Duration = Duration::from_millis(1800);

/// A short-lived token is replaced before it lapses.
#[tokio::test(flavor = "multi_thread")]
async fn oauth2_a_short_lived_token_is_refreshed_before_it_lapses() {
    let dir = tempfile::tempdir().unwrap();
    let Some(smtp) = Smtp::start(&dir.path().join("smtp"), 0, &[]) else {
        return;
    };
    let tokens = TokenEndpoint::default();
    let authority = tokens.start().await;
    *tokens.expires_in.lock().unwrap() = 2;
    let mut plant = TestPlant::new(&Peers::default());
    set_smtp(&plant, &oauth_smtp(smtp.port, &authority));
    plant.start().await;
    assert_eq!(mail(&plant, "first").await["value"]["status"], "delivered");
    assert_eq!(tokens.count(), 1);
    tokio::time::sleep(INTO_THE_LAST_FIFTH).await;
    // Within the last fifth of its life: a new token is fetched before sending.
    assert_eq!(mail(&plant, "second").await["value"]["status"], "delivered");
    assert_eq!(tokens.count(), 2);
    assert!(
        xoauth2_strings(&smtp)
            .last()
            .unwrap()
            .contains("Bearer tok-2")
    );
}

/// A 535 once makes the sender fetch one fresh token and send again, successfully.
#[tokio::test(flavor = "multi_thread")]
async fn oauth2_a_refused_token_is_replaced_once_and_the_send_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let Some(smtp) = Smtp::start(&dir.path().join("smtp"), 0, &[]) else {
        return;
    };
    let tokens = TokenEndpoint::default();
    let authority = tokens.start().await;
    smtp.control(json!({ "auth_fail_count": 1 }));
    let mut plant = TestPlant::new(&Peers::default());
    set_smtp(&plant, &oauth_smtp(smtp.port, &authority));
    plant.start().await;
    let r = mail(&plant, "after 535").await;
    assert_eq!(r["value"]["status"], "delivered", "{r}");
    assert_eq!(tokens.count(), 2, "exactly one fresh token");
    assert_eq!(smtp.messages().len(), 1);
}

/// A token endpoint answering 401 is a permanent error that says the credentials were
/// refused (and never shows the secret).
#[tokio::test(flavor = "multi_thread")]
async fn oauth2_refused_client_credentials_are_a_permanent_error_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let Some(smtp) = Smtp::start(&dir.path().join("smtp"), 0, &[]) else {
        return;
    };
    let tokens = TokenEndpoint::default();
    let authority = tokens.start().await;
    *tokens.refuse.lock().unwrap() = true;
    let mut plant = TestPlant::new(&Peers::default());
    set_smtp(&plant, &oauth_smtp(smtp.port, &authority));
    plant.start().await;
    let r = mail(&plant, "nope").await;
    assert_eq!(r["error"]["class"], "permanent", "{r}");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("refused the client credentials"),
        "{message}"
    );
    assert!(!message.contains(SECRET));
    assert_eq!(plant.counts("plant-a").await, (0, 0));
}

/// `[6.3-2]`: `Notify` is there for alarm on-trigger scripts and for shared scripts, not
/// only for instance scripts — an alarm crossing and a shared script each send an e-mail
/// that reaches the SMTP server with the list's recipients.
#[tokio::test(flavor = "multi_thread")]
async fn alarm_and_shared_scripts_send_email_with_notify() {
    let dir = tempfile::tempdir().unwrap();
    let Some(smtp) = Smtp::start(&dir.path().join("smtp"), 0, &[]) else {
        return;
    };
    let mut plant = TestPlant::new(&Peers {
        smtp_port: smtp.port,
        ..Peers::default()
    });
    write(
        plant.dir.path(),
        "scripts/alarm.rhai",
        "Notify.To(\"Operators\").Send(`${params.alarm} on ${Instance.Code}`, `level ${params.value}`);",
    );
    write(
        plant.dir.path(),
        "scripts/shared/page.rhai",
        "Notify.To(params.list).Send(params.subject, params.message)",
    );
    write(
        plant.dir.path(),
        "scripts/Page.rhai",
        "Shared.Call(\"page\", params)",
    );
    let text = std::fs::read_to_string(&plant.config)
        .unwrap()
        .replace(
            "double = \"scripts/shared/double.rhai\"",
            "double = \"scripts/shared/double.rhai\"\npage = \"scripts/shared/page.rhai\"",
        )
        .replace(
            "Echo = \"scripts/Echo.rhai\", ",
            "Echo = \"scripts/Echo.rhai\", Page = \"scripts/Page.rhai\", ",
        );
    std::fs::write(&plant.config, text).unwrap();
    plant.start().await;

    let (status, body) = plant
        .call(
            "SetLevels",
            json!({ "tank": "T-2", "level": 96.5, "setpoint": 60.0 }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    wait_until(
        "the alarm's e-mail arrives",
        Duration::from_secs(15),
        || smtp.messages().len() == 1,
    )
    .await;
    let alarm = &smtp.messages()[0];
    let data = alarm["data"].as_str().unwrap();
    assert!(
        data.contains("Subject: High on T-2") && data.contains("level 96.5"),
        "{data}"
    );
    assert_eq!(
        alarm["rcpt_tos"],
        json!([
            "ops1@plant.example",
            "ops2@plant.example",
            "ops1@plant.example"
        ])
    );

    let r = plant
        .run(
            "T-1",
            "Page",
            json!({ "list": "Operators", "subject": "Shift report", "message": "All tanks normal." }),
        )
        .await;
    assert_eq!(r, json!({ "status": "delivered" }), "{r}");
    let messages = smtp.messages();
    assert_eq!(messages.len(), 2, "one more e-mail, from the shared script");
    let data = messages[1]["data"].as_str().unwrap();
    assert!(
        data.contains("Subject: Shift report") && data.contains("All tanks normal."),
        "{data}"
    );
}
