//! The operator console's guards, over plain HTTP against a running plant: nothing under
//! `/ui` answers without a session, no POST passes without its session's CSRF token,
//! the admin token is never sent back, and bad input gets a page that says why.

mod common;

use common::*;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;
use std::time::Duration;

/// A client that shows redirects instead of following them, and keeps no cookies.
fn browserless() -> reqwest::Client {
    switchyard_core::tls::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Every console route, with the method it answers.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/ui"),
    ("GET", "/ui/"),
    ("GET", "/ui/parked"),
    ("GET", "/ui/parked?site=plant-a&category=external"),
    ("GET", "/ui/parked/plant-a/0193"),
    ("GET", "/ui/parked/export?format=json"),
    ("GET", "/ui/parked/export?format=csv"),
    ("GET", "/ui/failures"),
    ("GET", "/ui/keys"),
    ("GET", "/ui/keys/mes/openapi.json"),
    ("GET", "/ui/no-such-page"),
    ("POST", "/ui/logout"),
    ("POST", "/ui/parked/confirm"),
    ("POST", "/ui/parked/apply"),
    ("POST", "/ui/keys/other/disable"),
    ("POST", "/ui/keys/other/enable"),
];

struct Console {
    base: String,
    http: reqwest::Client,
}

impl Console {
    fn new(plant: &TestPlant) -> Console {
        Console {
            base: format!("http://127.0.0.1:{}", plant.central_port),
            http: browserless(),
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        if method == reqwest::Method::POST {
            request = request
                .header("content-type", "application/x-www-form-urlencoded")
                .body(serde_urlencoded::to_string(form).unwrap());
        }
        request.send().await.unwrap()
    }

    /// Logs in: the `name=value` of the session cookie.
    async fn login(&self) -> String {
        let response = self
            .send("POST", "/ui/login", None, &[("token", ADMIN_TOKEN)])
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()[LOCATION], "/ui");
        let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_string();
        set_cookie.split(';').next().unwrap().to_string()
    }

    /// A page's body, checked never to carry the admin token.
    async fn page(&self, path: &str, cookie: &str) -> (StatusCode, String) {
        let response = self.send("GET", path, Some(cookie), &[]).await;
        let status = response.status();
        for (name, value) in response.headers() {
            assert!(
                !value
                    .as_bytes()
                    .windows(ADMIN_TOKEN.len())
                    .any(|w| w == ADMIN_TOKEN.as_bytes()),
                "{path}: header {name} carries the admin token"
            );
        }
        let body = response.text().await.unwrap();
        assert!(!body.contains(ADMIN_TOKEN), "{path} shows the admin token");
        (status, body)
    }
}

/// The values of a page's hidden `msg` fields (the messages a form acts on).
fn selected(page: &str) -> Vec<String> {
    page.split("name=\"msg\" value=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect()
}

/// The CSRF token in a page's forms.
fn csrf_of(page: &str) -> String {
    let start = page
        .find("name=\"csrf\" value=\"")
        .expect("the page has a form with a CSRF token")
        + "name=\"csrf\" value=\"".len();
    page[start..].split('"').next().unwrap().to_string()
}

async fn openapi_status(plant: &TestPlant, key: &str) -> u16 {
    http()
        .get(format!(
            "http://127.0.0.1:{}/openapi.json",
            plant.central_port
        ))
        .header("X-API-Key", key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_needs_a_session_and_every_post_its_csrf_token() {
    let mut plant = TestPlant::new(&Peers::default());
    plant.start().await;
    let console = Console::new(&plant);

    // Without a session (or with a made-up one) every route sends the browser to login.
    for cookie in [None, Some("sy_session=made-up-session-id")] {
        for (method, path) in ROUTES {
            let response = console.send(method, path, cookie, &[("csrf", "x")]).await;
            assert_eq!(
                response.status(),
                StatusCode::SEE_OTHER,
                "{method} {path} with {cookie:?}"
            );
            assert_eq!(response.headers()[LOCATION], "/ui/login", "{method} {path}");
        }
    }

    // A wrong token opens nothing.
    let response = console
        .send("POST", "/ui/login", None, &[("token", "e2e-admin-tokeN")])
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get(SET_COOKIE).is_none());
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("not the admin token")
    );

    // The right one opens a session whose cookie is HttpOnly, SameSite=Strict, scoped
    // to /ui, expiring — and is not the token.
    let response = console
        .send("POST", "/ui/login", None, &[("token", ADMIN_TOKEN)])
        .await;
    let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=28800"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains(ADMIN_TOKEN), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();

    // Every page answers with the session and never shows the admin token.
    for (method, path) in ROUTES.iter().filter(|(m, _)| *m == "GET") {
        let (status, _) = console.page(path, &cookie).await;
        let expected = match *path {
            "/ui/no-such-page" | "/ui/parked/plant-a/0193" => StatusCode::NOT_FOUND,
            _ => StatusCode::OK,
        };
        assert_eq!(status, expected, "{method} {path}");
    }
    let (_, keys_page) = console.page("/ui/keys", &cookie).await;
    let csrf = csrf_of(&keys_page);
    let config_before = std::fs::read_to_string(&plant.config).unwrap();
    assert_eq!(openapi_status(&plant, OTHER_KEY).await, 200);

    // A POST without the token, with a wrong one, or with another session's is refused
    // and changes nothing.
    let other_session = console.login().await;
    let (_, other_page) = console.page("/ui/keys", &other_session).await;
    let other_csrf = csrf_of(&other_page);
    assert_ne!(csrf, other_csrf);
    for form in [
        vec![],
        vec![("csrf", "")],
        vec![("csrf", "not-the-token")],
        vec![("csrf", other_csrf.as_str())],
    ] {
        for path in [
            "/ui/keys/other/disable",
            "/ui/parked/confirm",
            "/ui/parked/apply",
            "/ui/logout",
        ] {
            let mut form = form.clone();
            form.extend([("action", "discard"), ("msg", "plant-a/0193")]);
            let response = console.send("POST", path, Some(&cookie), &form).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path} {form:?}");
            let body = response.text().await.unwrap();
            assert!(body.contains("security token"), "{body}");
        }
    }
    assert_eq!(
        std::fs::read_to_string(&plant.config).unwrap(),
        config_before
    );
    assert_eq!(openapi_status(&plant, OTHER_KEY).await, 200);

    // With its token the same form works: the key is disabled in the file and refused
    // at once (the console reloads central), as `switchyard key disable` + reload does.
    let response = console
        .send(
            "POST",
            "/ui/keys/other/disable",
            Some(&cookie),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[LOCATION],
        "/ui/keys?changed=other&enabled=false"
    );
    assert_eq!(openapi_status(&plant, OTHER_KEY).await, 401);
    let config = switchyard_core::config::Config::load(&plant.config).unwrap();
    assert!(!config.api_keys["other"].enabled);
    assert!(config.api_keys["mes"].enabled);
    let (_, page) = console
        .page("/ui/keys?changed=other&enabled=false", &cookie)
        .await;
    assert!(page.contains("central reloaded"), "{page}");
    let response = console
        .send(
            "POST",
            "/ui/keys/other/enable",
            Some(&cookie),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(openapi_status(&plant, OTHER_KEY).await, 200);

    // Bad input gets a page that says what is wrong, never a crash.
    for (path, status, says) in [
        ("/ui/failures?status=abc", 400, "not a status"),
        (
            "/ui/failures?since=last+tuesday",
            400,
            "neither an RFC 3339 time",
        ),
        ("/ui/failures?page=0", 400, "page must be a number"),
        ("/ui/failures?page=18446744073709551615", 200, "0 failures"),
        (
            "/ui/parked?page=18446744073709551615",
            200,
            "No parked messages match",
        ),
        ("/ui/parked?page=x", 400, "page must be a number"),
        ("/ui/parked?site=nowhere", 400, "no site named"),
        ("/ui/parked?category=fax", 400, "not a category"),
        (
            "/ui/parked/export?format=xml",
            400,
            "format=json or format=csv",
        ),
        ("/ui/parked/nowhere/1", 404, "no site named"),
        ("/ui/keys/nobody/openapi.json", 404, "no API key named"),
    ] {
        let (actual, body) = console.page(path, &cookie).await;
        assert_eq!(actual.as_u16(), status, "{path}");
        assert!(body.contains(says), "{path}: {body}");
    }
    for (path, form, says) in [
        (
            "/ui/parked/confirm",
            vec![("action", "retry")],
            "Select at least one",
        ),
        (
            "/ui/parked/confirm",
            vec![("action", "explode"), ("msg", "plant-a/1")],
            "retry or discard",
        ),
        (
            "/ui/parked/apply",
            vec![("action", "retry"), ("msg", "nowhere/1")],
            "no site named",
        ),
        (
            "/ui/parked/apply",
            vec![("action", "retry"), ("msg", "no-slash")],
            "does not name a message",
        ),
        ("/ui/keys/nobody/disable", vec![], "no API key named"),
    ] {
        let mut form = form.clone();
        form.push(("csrf", &csrf));
        let response = console.send("POST", path, Some(&cookie), &form).await;
        let status = response.status();
        let body = response.text().await.unwrap();
        assert!(status.is_client_error(), "{path}: {status}");
        assert!(body.contains(says), "{path}: {body}");
    }

    // "All matching": two reports to a system that is down, parked after its 2 retries,
    // discarded together after the confirmation listed exactly them.
    for _ in 0..2 {
        let r = plant
            .run(
                "T-1",
                "Cached",
                json!({ "system": "Down", "method": "Ping", "args": {} }),
            )
            .await;
        assert_eq!(r["value"]["status"], "buffered", "{r}");
    }
    wait_until_async("both are parked", Duration::from_secs(60), || async {
        plant.counts("plant-a").await == (0, 2)
    })
    .await;
    let (_, list) = console.page("/ui/parked?target=down", &cookie).await;
    assert!(list.contains("Discard all 2 matching"), "{list}");
    let all = [
        ("csrf", csrf.as_str()),
        ("all", "1"),
        ("action", "discard"),
        ("site", "plant-a"),
        ("category", "external"),
        ("target", "down"),
        ("q", ""),
    ];
    let response = console
        .send("POST", "/ui/parked/confirm", Some(&cookie), &all)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let confirm = response.text().await.unwrap();
    assert!(confirm.contains("Discard 2 parked messages?"), "{confirm}");
    let chosen = selected(&confirm);
    assert_eq!(chosen.len(), 2, "{confirm}");
    assert_eq!(
        plant.counts("plant-a").await,
        (0, 2),
        "nothing happens before the confirmation"
    );
    let mut apply = vec![("csrf", csrf.as_str()), ("action", "discard")];
    apply.extend(chosen.iter().map(|m| ("msg", m.as_str())));
    let response = console
        .send("POST", "/ui/parked/apply", Some(&cookie), &apply)
        .await;
    let done = response.text().await.unwrap();
    assert!(done.contains("2 messages discarded."), "{done}");
    assert_eq!(plant.counts("plant-a").await, (0, 0));
    let response = console
        .send("POST", "/ui/parked/confirm", Some(&cookie), &all)
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("No parked messages match")
    );

    // Logging out ends the session (with its token, like every POST).
    let response = console
        .send("POST", "/ui/logout", Some(&cookie), &[("csrf", &csrf)])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(
        response.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let response = console.send("GET", "/ui", Some(&cookie), &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    // The other session lives on.
    assert_eq!(console.page("/ui", &other_session).await.0, StatusCode::OK);
}
