//! Central's failure log (every 5xx of the Inbound API): newest first, paged, filtered
//! by method, status, time and incident id.

use super::Console;
use super::layout::{self, Nav, when};
use super::overview::enc;
use super::session::Session;
use crate::failure_log::{FailureLog, FailureRecord, parse_since};
use axum::extract::{Extension, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, FixedOffset};
use maud::html;
use serde::Deserialize;
use std::sync::Arc;

/// Records per page.
const PAGE: usize = 50;

/// The filters (every field optional; empty = any).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Filter {
    #[serde(default)]
    method: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    incident: String,
    #[serde(default)]
    page: String,
}

/// The filters, checked.
#[derive(Debug)]
struct Parsed {
    method: String,
    /// An exact status, or a class (`5` for `5xx`).
    status: Option<Status>,
    since: Option<DateTime<FixedOffset>>,
    until: Option<DateTime<FixedOffset>>,
    incident: String,
    page: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Exact(u16),
    Class(u16),
}

fn parse_status(text: &str) -> Result<Option<Status>, String> {
    let text = text.trim().to_ascii_lowercase();
    if text.is_empty() {
        return Ok(None);
    }
    if let Some(class) = text.strip_suffix("xx")
        && let Ok(digit) = class.parse::<u16>()
        && (1..=5).contains(&digit)
    {
        return Ok(Some(Status::Class(digit)));
    }
    match text.parse::<u16>() {
        Ok(code) if (100..=599).contains(&code) => Ok(Some(Status::Exact(code))),
        _ => Err(format!(
            "“{text}” is not a status: use a code such as 500 or a class such as 5xx."
        )),
    }
}

fn parse_time(what: &str, text: &str) -> Result<Option<DateTime<FixedOffset>>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    parse_since(text)
        .map(Some)
        .map_err(|e| format!("{what}: {e}."))
}

impl Filter {
    fn parse(&self) -> Result<Parsed, String> {
        let page = match self.page.trim() {
            "" => 1,
            text => match text.parse::<usize>() {
                Ok(n) if n >= 1 => n,
                _ => return Err("The page must be a number from 1 on.".into()),
            },
        };
        Ok(Parsed {
            method: self.method.trim().to_string(),
            status: parse_status(&self.status)?,
            since: parse_time("From", &self.since)?,
            until: parse_time("Until", &self.until)?,
            incident: self.incident.trim().to_lowercase(),
            page,
        })
    }

    fn query(&self) -> String {
        format!(
            "method={}&status={}&since={}&until={}&incident={}",
            enc(&self.method),
            enc(&self.status),
            enc(&self.since),
            enc(&self.until),
            enc(&self.incident)
        )
    }
}

impl Parsed {
    fn matches(&self, record: &FailureRecord) -> bool {
        let status = match self.status {
            None => true,
            Some(Status::Exact(code)) => record.status == code,
            Some(Status::Class(class)) => record.status / 100 == class,
        };
        let until = match self.until {
            None => true,
            Some(until) => DateTime::parse_from_rfc3339(&record.time).is_ok_and(|t| t <= until),
        };
        status
            && until
            && (self.method.is_empty()
                || record
                    .method
                    .to_lowercase()
                    .contains(&self.method.to_lowercase()))
            && (self.incident.is_empty() || record.incident.to_lowercase().contains(&self.incident))
    }
}

/// `GET /ui/failures`.
pub(crate) async fn page(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
    Query(filter): Query<Filter>,
) -> Response {
    let parsed = match filter.parse() {
        Ok(parsed) => parsed,
        Err(message) => {
            return layout::error_page(StatusCode::BAD_REQUEST, Some(&session), &message);
        }
    };
    let path = console.central.failure_log().path().to_path_buf();
    let since = parsed.since;
    let records = match tokio::task::spawn_blocking(move || FailureLog::read(&path, since)).await {
        Ok(Ok(records)) => records,
        Ok(Err(e)) => {
            return layout::error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(&session),
                &format!("The failure log cannot be read: {e}"),
            );
        }
        Err(e) => {
            return layout::error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(&session),
                &format!("The failure log cannot be read: {e}"),
            );
        }
    };
    // Newest first.
    let matching: Vec<&FailureRecord> =
        records.iter().rev().filter(|r| parsed.matches(r)).collect();
    let total = matching.len();
    let pages = total.div_ceil(PAGE).max(1);
    let page = parsed.page;
    let query = filter.query();
    let body = html! {
        h1 { "Failures" }
        p { small { "Every 5xx answer of the Inbound API, with the detail the caller was not shown. Times are RFC 3339 or a duration back from now (1h, 30m)." } }
        form.filters method="get" action="/ui/failures" {
            label { "Method contains" input type="text" name="method" value=(filter.method); }
            label { "Status" input type="text" name="status" value=(filter.status) placeholder="500 or 5xx" size="8"; }
            label { "From" input type="text" name="since" value=(filter.since) placeholder="1h or 2026-12-01T00:00:00Z"; }
            label { "Until" input type="text" name="until" value=(filter.until) placeholder="RFC 3339"; }
            label { "Incident id" input type="search" name="incident" value=(filter.incident); }
            button type="submit" { "Filter" }
        }
        p { (total) " failure" @if total != 1 { "s" } }
        @if total > 0 {
            table {
                thead { tr {
                    th { "Time" } th { "Method" } th { "Key" } th.num { "Status" } th { "Code" }
                    th { "Incident" } th.num { "ms" } th { "Detail" }
                } }
                tbody {
                    @for r in matching.iter().skip((page - 1).saturating_mul(PAGE)).take(PAGE) {
                        tr {
                            td.nowrap { (when(&r.time)) }
                            td { (r.method) }
                            td { (r.key.as_deref().unwrap_or("–")) }
                            td.num.status { (r.status) }
                            td { (r.code) }
                            td.mono.incident { (r.incident) }
                            td.num { (r.duration_ms) }
                            td { (r.detail) }
                        }
                    }
                }
            }
            (layout::pager("/ui/failures", &query, page, pages))
        }
    };
    layout::respond(
        StatusCode::OK,
        layout::page("Failures", Some(&session), Nav::Failures, None, body),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(time: &str, method: &str, status: u16, incident: &str) -> FailureRecord {
        FailureRecord {
            time: time.into(),
            method: method.into(),
            key: Some("mes".into()),
            incident: incident.into(),
            status,
            code: "SCRIPT_ERROR".into(),
            detail: "boom".into(),
            duration_ms: 1,
        }
    }

    #[test]
    fn filters_by_method_status_time_and_incident() {
        let a = record("2026-12-01T10:00:00Z", "Broken", 500, "0193-aaaa");
        let b = record("2026-12-01T12:00:00Z", "GetLevels", 502, "0193-bbbb");
        let filter = |method: &str, status: &str, since: &str, until: &str, incident: &str| {
            Filter {
                method: method.into(),
                status: status.into(),
                since: since.into(),
                until: until.into(),
                incident: incident.into(),
                page: String::new(),
            }
            .parse()
            .unwrap()
        };
        let f = filter("broken", "", "", "", "");
        assert!(f.matches(&a) && !f.matches(&b));
        let f = filter("", "5xx", "", "", "");
        assert!(f.matches(&a) && f.matches(&b));
        let f = filter("", "502", "", "", "");
        assert!(!f.matches(&a) && f.matches(&b));
        let f = filter("", "", "", "2026-12-01T11:00:00Z", "");
        assert!(f.matches(&a) && !f.matches(&b));
        let f = filter("", "", "", "", "BBBB");
        assert!(!f.matches(&a) && f.matches(&b));
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        let bad = |status: &str, until: &str, page: &str| {
            Filter {
                status: status.into(),
                until: until.into(),
                page: page.into(),
                ..Filter::default()
            }
            .parse()
            .unwrap_err()
        };
        assert!(bad("5x", "", "").contains("not a status"));
        assert!(bad("700", "", "").contains("not a status"));
        assert!(bad("", "yesterday", "").contains("Until"));
        assert!(bad("", "", "0").contains("page"));
    }
}
