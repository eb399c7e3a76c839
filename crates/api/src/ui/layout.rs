//! The frame every console page shares: head, navigation, logout, and the headers that
//! keep pages out of caches and frames.

use super::session::{CSRF_FIELD, Session};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

/// Which navigation entry is the current page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Overview,
    Parked,
    Failures,
    Keys,
    /// Login and error pages.
    Other,
}

/// Small, legible on a tablet, no external files (the CSP allows none).
const STYLE: &str = r#"
*{box-sizing:border-box}
body{font:16px/1.4 system-ui,sans-serif;margin:0;color:#1d232b;background:#f4f6f8}
header{background:#1f3a56;color:#fff;padding:.5rem 1rem;display:flex;flex-wrap:wrap;gap:.25rem 1rem;align-items:center}
header strong{margin-right:1rem}
header a{color:#fff;text-decoration:none;padding:.5rem .25rem;border-bottom:3px solid transparent}
header a.on{border-bottom-color:#f0b429}
header form{margin-left:auto}
main{padding:1rem;max-width:80rem;overflow-x:auto}
h1{font-size:1.4rem;margin:.25rem 0 1rem}
h2{font-size:1.15rem;margin:1.25rem 0 .5rem}
table{border-collapse:collapse;width:100%;background:#fff;margin-bottom:1rem}
th,td{text-align:left;padding:.45rem .5rem;border-bottom:1px solid #dde3ea;vertical-align:top}
th{background:#e8edf2;font-weight:600}
td.num,th.num{text-align:right}
td.nowrap{white-space:nowrap}
.card{background:#fff;border:1px solid #dde3ea;border-radius:6px;padding:.75rem 1rem;margin-bottom:1rem}
.ok{color:#13653f;font-weight:600}.bad{color:#b42318;font-weight:600}.warn{color:#9a5b00;font-weight:600}
.notice{background:#fff8e1;border:1px solid #f0b429;padding:.6rem 1rem;border-radius:6px;margin-bottom:1rem}
.error{background:#fdecea;border:1px solid #b42318;padding:.6rem 1rem;border-radius:6px;margin-bottom:1rem}
.done{background:#e7f6ee;border:1px solid #13653f;padding:.6rem 1rem;border-radius:6px;margin-bottom:1rem}
form.filters{display:flex;flex-wrap:wrap;gap:.5rem;align-items:end;margin-bottom:1rem}
label{display:flex;flex-direction:column;font-size:.85rem;gap:.15rem}
input,select,button{font:inherit;padding:.45rem .6rem;border:1px solid #9aa8b6;border-radius:4px;background:#fff}
input[type=checkbox]{width:1.4rem;height:1.4rem}
button{background:#1f3a56;color:#fff;border-color:#1f3a56;cursor:pointer;min-height:2.5rem}
button.danger{background:#b42318;border-color:#b42318}
button.plain{background:#fff;color:#1f3a56}
pre{background:#fff;border:1px solid #dde3ea;padding:.75rem;overflow:auto;white-space:pre-wrap;word-break:break-word}
code,.mono{font-family:ui-monospace,monospace;font-size:.9em;word-break:break-all}
.actions{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;margin:.5rem 0 1rem}
.spark{display:block}
small{color:#5b6876}
"#;

/// An RFC 3339 time as `YYYY-MM-DD HH:MM:SS` in UTC (the full value on hover); text
/// that is not such a time is shown as it is.
pub(crate) fn when(rfc3339: &str) -> Markup {
    match DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => html! {
            time datetime=(rfc3339) title=(rfc3339) {
                (t.with_timezone(&Utc).format("%Y-%m-%d %H:%M:%S"))
            }
        },
        Err(_) => html! { (rfc3339) },
    }
}

/// The hidden field with the session's CSRF token, for every state-changing form.
pub(crate) fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(session.csrf); }
}

/// A whole page: `refresh` reloads it every so many seconds.
pub(crate) fn page(
    title: &str,
    session: Option<&Session>,
    nav: Nav,
    refresh: Option<u32>,
    body: Markup,
) -> Markup {
    let entry = |target: Nav, href: &str, label: &str| {
        html! { a href=(href) class=[(nav == target).then_some("on")] { (label) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(seconds) = refresh {
                    meta http-equiv="refresh" content=(seconds);
                }
                title { (title) " · switchyard" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                header {
                    strong { "switchyard" }
                    @if let Some(session) = session {
                        (entry(Nav::Overview, "/ui", "Overview"))
                        (entry(Nav::Parked, "/ui/parked", "Parked messages"))
                        (entry(Nav::Failures, "/ui/failures", "Failures"))
                        (entry(Nav::Keys, "/ui/keys", "Keys and methods"))
                        form method="post" action="/ui/logout" {
                            (csrf_field(session))
                            button.plain type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A rendered page as a response, with the console's headers.
/// Links to the newer and older page of a paged list at `path` with its filters `query`.
pub(crate) fn pager(path: &str, query: &str, page: usize, pages: usize) -> Markup {
    html! {
        div.actions {
            @if page > 1 {
                a href=(format!("{path}?{query}&page={}", page - 1)) { "← newer" }
            }
            span { "page " (page) " of " (pages) }
            @if page < pages {
                a href=(format!("{path}?{query}&page={}", page + 1)) { "older →" }
            }
        }
    }
}

pub(crate) fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, Html(markup.into_string())).into_response();
    secure_headers(response.headers_mut());
    response
}

/// Headers of every console response: never cached, never framed, no scripts.
pub(crate) fn secure_headers(headers: &mut axum::http::HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// A page that says what went wrong, with a way back.
pub(crate) fn error_page(status: StatusCode, session: Option<&Session>, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    respond(
        status,
        page(
            title,
            session,
            Nav::Other,
            None,
            html! {
                h1 { (title) }
                p.error { (message) }
                p { a href="/ui" { "Back to the overview" } }
            },
        ),
    )
}
