//! Parked messages of every site: filter (site, category, target, text in the reason),
//! page, look at one, retry or discard one or a selection after a confirmation, export
//! the filtered set as JSON or CSV. Payloads and reasons are shown redacted.

use super::Console;
use super::form::Fields;
use super::layout::{self, Nav, csrf_field, when};
use super::overview::enc;
use super::redact;
use super::session::Session;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::protocol::ParkedView;

/// Messages per page.
const PAGE: usize = 50;

/// Parked messages read from one site at most for a search (oldest first).
const MAX_SCAN: usize = 10_000;

/// Messages one retry or discard acts on at most.
const MAX_BULK: usize = 1_000;

/// Messages asked of a site per request while scanning.
const SCAN_PAGE: usize = 1_000;

/// How long one request to a site may take.
const SITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The categories of store-and-forward messages.
const CATEGORIES: &[&str] = &["external", "database", "notification"];

/// The filters of the list and the export (every field optional; empty = any).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Filter {
    #[serde(default)]
    site: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: String,
    #[serde(default)]
    format: String,
}

impl Filter {
    fn matches(&self, item: &Found) -> bool {
        let contains = |haystack: &str, needle: &str| {
            needle.is_empty() || haystack.to_lowercase().contains(&needle.to_lowercase())
        };
        (self.category.is_empty() || item.view.category == self.category)
            && contains(&item.view.target, self.target.trim())
            && contains(&item.reason, self.q.trim())
    }

    /// The query string of these filters (page and format left out).
    fn query(&self) -> String {
        format!(
            "site={}&category={}&target={}&q={}",
            enc(&self.site),
            enc(&self.category),
            enc(&self.target),
            enc(&self.q)
        )
    }
}

/// A parked message and its site, reason already redacted.
#[derive(Debug)]
struct Found {
    site: String,
    view: ParkedView,
    reason: String,
}

/// What a scan of the sites found.
#[derive(Debug, Default)]
struct Scan {
    items: Vec<Found>,
    /// Sites that could not be read, and why.
    problems: Vec<String>,
}

/// A bad request, said on a page.
fn bad_request(session: &Session, message: &str) -> Response {
    layout::error_page(StatusCode::BAD_REQUEST, Some(session), message)
}

/// The sites to look at: the one named (which must exist), or all.
fn sites(console: &Console, named: &str) -> Result<Vec<String>, String> {
    let registry = console.central.registry();
    if named.is_empty() {
        return Ok(registry.config.sites.keys().cloned().collect());
    }
    if registry.config.sites.contains_key(named) {
        Ok(vec![named.to_string()])
    } else {
        Err(format!("There is no site named “{named}”."))
    }
}

/// Reads the parked messages of `sites` (at most [`MAX_SCAN`] each), newest first.
async fn scan(console: &Console, sites: &[String]) -> Scan {
    let registry = console.central.registry();
    let per_site = futures::future::join_all(sites.iter().map(|site| {
        let registry = registry.clone();
        async move {
            let mut items = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = registry
                    .sites
                    .parked(site, after.as_deref(), SCAN_PAGE, SITE_TIMEOUT)
                    .await
                    .map_err(|f| format!("{site}: {}", f.message))?;
                items.extend(page.items);
                match page.next {
                    Some(next) if items.len() < MAX_SCAN => after = Some(next),
                    Some(_) => {
                        return Ok((items, Some(format!(
                            "{site} has more than {MAX_SCAN} parked messages: only the oldest {MAX_SCAN} are searched (use the CLI for the rest)."
                        ))));
                    }
                    None => return Ok((items, None)),
                }
            }
        }
    }))
    .await;
    let mut scan = Scan::default();
    for (site, result) in sites.iter().zip(per_site) {
        match result {
            Ok((items, note)) => {
                scan.problems.extend(note);
                scan.items.extend(items.into_iter().map(|view| Found {
                    site: site.clone(),
                    reason: redact::text_with_urls(&view.reason),
                    view,
                }));
            }
            Err(problem) => scan.problems.push(problem),
        }
    }
    scan.items.sort_by(|a, b| b.view.parked.cmp(&a.view.parked));
    scan
}

/// Filters and reads the sites, or says what is wrong with the filters.
async fn search(console: &Console, filter: &Filter) -> Result<Scan, String> {
    if !filter.category.is_empty() && !CATEGORIES.contains(&filter.category.as_str()) {
        return Err(format!(
            "“{}” is not a category (external, database or notification).",
            filter.category
        ));
    }
    let sites = sites(console, &filter.site)?;
    let mut scan = scan(console, &sites).await;
    scan.items.retain(|item| filter.matches(item));
    Ok(scan)
}

fn problems(scan: &Scan) -> Markup {
    html! {
        @for problem in &scan.problems {
            p.notice { (problem) }
        }
    }
}

/// `GET /ui/parked`.
pub(crate) async fn list(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
    Query(filter): Query<Filter>,
) -> Response {
    let page: usize = match filter.page.trim() {
        "" => 1,
        text => match text.parse() {
            Ok(n) if n >= 1 => n,
            _ => return bad_request(&session, "The page must be a number from 1 on."),
        },
    };
    let scan = match search(&console, &filter).await {
        Ok(scan) => scan,
        Err(message) => return bad_request(&session, &message),
    };
    let total = scan.items.len();
    let pages = total.div_ceil(PAGE).max(1);
    let shown: Vec<&Found> = scan
        .items
        .iter()
        .skip((page - 1).saturating_mul(PAGE))
        .take(PAGE)
        .collect();
    let site_names: Vec<String> = console
        .central
        .registry()
        .config
        .sites
        .keys()
        .cloned()
        .collect();
    let query = filter.query();
    let body = html! {
        h1 { "Parked messages" }
        form.filters method="get" action="/ui/parked" {
            label { "Site" select name="site" {
                option value="" { "all" }
                @for name in &site_names {
                    option value=(name) selected[*name == filter.site] { (name) }
                }
            } }
            label { "Category" select name="category" {
                option value="" { "all" }
                @for c in CATEGORIES {
                    option value=(c) selected[*c == filter.category] { (c) }
                }
            } }
            label { "Target" input type="text" name="target" value=(filter.target) placeholder="system, connection, list"; }
            label { "Reason contains" input type="search" name="q" value=(filter.q); }
            button type="submit" { "Filter" }
        }
        (problems(&scan))
        div.actions {
            span { (total) " parked message" @if total != 1 { "s" } }
            a href=(format!("/ui/parked/export?{query}&format=json")) download { "Export JSON" }
            a href=(format!("/ui/parked/export?{query}&format=csv")) download { "Export CSV" }
        }
        @if shown.is_empty() {
            p { "No parked messages match." }
        } @else {
            form method="post" action="/ui/parked/confirm" {
                (csrf_field(&session))
                table {
                    thead { tr {
                        th { "Select" } th { "Site" } th { "Category" } th { "Target" }
                        th.num { "Attempts" } th { "Parked" } th { "Reason" }
                    } }
                    tbody {
                        @for item in &shown {
                            tr {
                                td { input type="checkbox" name="msg" value=(format!("{}/{}", item.site, item.view.id)) aria-label=(format!("select {}", item.view.id)); }
                                td.nowrap { (item.site) }
                                td { (item.view.category) }
                                td { (item.view.target) }
                                td.num { (item.view.attempts) }
                                td.nowrap { a href=(format!("/ui/parked/{}/{}", enc(&item.site), enc(&item.view.id))) { (when(&item.view.parked)) } }
                                td { (shorten(&item.reason, 160)) }
                            }
                        }
                    }
                }
                div.actions {
                    button #retry-selected type="submit" name="action" value="retry" { "Retry selected" }
                    button.danger #discard-selected type="submit" name="action" value="discard" { "Discard selected" }
                }
            }
            form.actions method="post" action="/ui/parked/confirm" {
                (csrf_field(&session))
                input type="hidden" name="all" value="1";
                input type="hidden" name="site" value=(filter.site);
                input type="hidden" name="category" value=(filter.category);
                input type="hidden" name="target" value=(filter.target);
                input type="hidden" name="q" value=(filter.q);
                button #retry-all type="submit" name="action" value="retry" { "Retry all " (total) " matching" }
                button.danger #discard-all type="submit" name="action" value="discard" { "Discard all " (total) " matching" }
            }
            (layout::pager("/ui/parked", &query, page, pages))
        }
    };
    layout::respond(
        StatusCode::OK,
        layout::page("Parked messages", Some(&session), Nav::Parked, None, body),
    )
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut out: String = text.chars().take(max).collect();
        out.push('…');
        out
    }
}

/// `GET /ui/parked/{site}/{id}`.
pub(crate) async fn detail(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
    Path((site, id)): Path<(String, String)>,
) -> Response {
    let sites = match sites(&console, &site) {
        Ok(sites) if !site.is_empty() => sites,
        Ok(_) => return bad_request(&session, "Name a site."),
        Err(message) => {
            return layout::error_page(StatusCode::NOT_FOUND, Some(&session), &message);
        }
    };
    let scan = scan(&console, &sites).await;
    let Some(item) = scan.items.iter().find(|f| f.view.id == id) else {
        let message = match scan.problems.first() {
            Some(problem) => format!("The message could not be looked up: {problem}"),
            None => {
                format!("{site} has no parked message {id}: it may have been retried or discarded.")
            }
        };
        return layout::error_page(StatusCode::NOT_FOUND, Some(&session), &message);
    };
    let payload =
        serde_json::to_string_pretty(&redact::payload(&item.view.payload)).unwrap_or_default();
    let selection = format!("{}/{}", item.site, item.view.id);
    let body = html! {
        h1 { "Parked message" }
        table {
            tbody {
                tr { th { "Id" } td.mono { (item.view.id) } }
                tr { th { "Site" } td { (item.site) } }
                tr { th { "Category" } td { (item.view.category) } }
                tr { th { "Target" } td { (item.view.target) } }
                tr { th { "Attempts" } td { (item.view.attempts) } }
                tr { th { "Buffered" } td { (when(&item.view.created)) } }
                tr { th { "Parked" } td { (when(&item.view.parked)) } }
                tr { th { "Last error" } td { (item.reason) } }
            }
        }
        h2 { "Payload" }
        pre.payload { (payload) }
        form.actions method="post" action="/ui/parked/confirm" {
            (csrf_field(&session))
            input type="hidden" name="msg" value=(selection);
            button type="submit" name="action" value="retry" { "Retry" }
            button.danger type="submit" name="action" value="discard" { "Discard" }
            a href="/ui/parked" { "Back to the list" }
        }
    };
    layout::respond(
        StatusCode::OK,
        layout::page("Parked message", Some(&session), Nav::Parked, None, body),
    )
}

/// `retry` or `discard`, as submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Retry,
    Discard,
}

impl Action {
    fn parse(text: Option<&str>) -> Result<Action, String> {
        match text {
            Some("retry") => Ok(Action::Retry),
            Some("discard") => Ok(Action::Discard),
            _ => Err("Choose retry or discard.".into()),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::Discard => "discard",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Action::Retry => "Retry",
            Action::Discard => "Discard",
        }
    }
}

/// The action and the selected `(site, id)` pairs of a submitted form.
fn selection(
    console: &Console,
    fields: &Fields,
) -> Result<(Action, Vec<(String, String)>), String> {
    let action = Action::parse(fields.get("action"))?;
    let registry = console.central.registry();
    let mut seen = std::collections::HashSet::new();
    let mut chosen: Vec<(String, String)> = Vec::new();
    for value in fields.all("msg") {
        let (site, id) = value
            .rsplit_once('/')
            .filter(|(site, id)| !site.is_empty() && !id.is_empty())
            .ok_or_else(|| format!("“{value}” does not name a message (site/id)."))?;
        if !registry.config.sites.contains_key(site) {
            return Err(format!("There is no site named “{site}”."));
        }
        let pair = (site.to_string(), id.to_string());
        if seen.insert(pair.clone()) {
            chosen.push(pair);
        }
        if chosen.len() > MAX_BULK {
            return Err(format!("Select at most {MAX_BULK} messages at once."));
        }
    }
    if chosen.is_empty() {
        return Err("Select at least one message.".into());
    }
    Ok((action, chosen))
}

/// "All matching": the messages the submitted filters match, at most [`MAX_BULK`]
/// (newest first), and a note when there are more.
async fn all_matching(
    console: &Console,
    fields: &Fields,
) -> Result<(Action, Vec<(String, String)>, Option<String>), String> {
    let action = Action::parse(fields.get("action"))?;
    let field = |name: &str| fields.get(name).unwrap_or("").to_string();
    let filter = Filter {
        site: field("site"),
        category: field("category"),
        target: field("target"),
        q: field("q"),
        ..Filter::default()
    };
    let scan = search(console, &filter).await?;
    if !scan.problems.is_empty() {
        return Err(format!(
            "Not every matching message could be read, so none is selected: {}",
            scan.problems.join(" ")
        ));
    }
    let total = scan.items.len();
    if total == 0 {
        return Err("No parked messages match.".into());
    }
    let chosen = scan
        .items
        .into_iter()
        .take(MAX_BULK)
        .map(|f| (f.site, f.view.id))
        .collect();
    let note = (total > MAX_BULK).then(|| {
        format!(
            "These are the newest {MAX_BULK} of the {total} matching messages; repeat for the rest."
        )
    });
    Ok((action, chosen, note))
}

/// `POST /ui/parked/confirm`: shows what would be retried or discarded.
pub(crate) async fn confirm(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
    Extension(fields): Extension<Fields>,
) -> Response {
    let chosen = if fields.get("all").is_some() {
        all_matching(&console, &fields).await
    } else {
        selection(&console, &fields).map(|(action, chosen)| (action, chosen, None))
    };
    let (action, chosen, note) = match chosen {
        Ok(chosen) => chosen,
        Err(message) => return bad_request(&session, &message),
    };
    let mut sites: Vec<String> = chosen.iter().map(|(s, _)| s.clone()).collect();
    sites.sort();
    sites.dedup();
    let scan = scan(&console, &sites).await;
    let find = |site: &str, id: &str| {
        scan.items
            .iter()
            .find(|f| f.site == site && f.view.id == id)
    };
    let count = chosen.len();
    let noun = if count == 1 { "message" } else { "messages" };
    let body = html! {
        h1 { (action.verb()) " " (count) " parked " (noun) "?" }
        @match action {
            Action::Retry => p { "They go back to pending with their attempts reset, and are delivered at the next try." },
            Action::Discard => p.notice { "Discarded messages are deleted for good: they are never delivered." },
        }
        @if let Some(note) = &note {
            p.notice { (note) }
        }
        (problems(&scan))
        table {
            thead { tr { th { "Site" } th { "Id" } th { "Target" } th { "Reason" } } }
            tbody {
                @for (site, id) in &chosen {
                    tr {
                        td { (site) }
                        td.mono { (id) }
                        @if let Some(found) = find(site, id) {
                            td { (found.view.category) " · " (found.view.target) }
                            td { (shorten(&found.reason, 160)) }
                        } @else {
                            td colspan="2" { span.warn { "not parked (any more)" } }
                        }
                    }
                }
            }
        }
        form.actions method="post" action="/ui/parked/apply" {
            (csrf_field(&session))
            input type="hidden" name="action" value=(action.as_str());
            @for (site, id) in &chosen {
                input type="hidden" name="msg" value=(format!("{site}/{id}"));
            }
            @match action {
                Action::Retry => button #confirm type="submit" { "Yes, retry " (count) " " (noun) },
                Action::Discard => button.danger #confirm type="submit" { "Yes, discard " (count) " " (noun) },
            }
            a href="/ui/parked" { "Cancel" }
        }
    };
    layout::respond(
        StatusCode::OK,
        layout::page("Confirm", Some(&session), Nav::Parked, None, body),
    )
}

/// `POST /ui/parked/apply`: retries or discards the confirmed selection.
pub(crate) async fn apply(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
    Extension(fields): Extension<Fields>,
) -> Response {
    let (action, chosen) = match selection(&console, &fields) {
        Ok(selection) => selection,
        Err(message) => return bad_request(&session, &message),
    };
    let registry = console.central.registry();
    let mut failed = Vec::new();
    for (site, id) in &chosen {
        if let Err(f) = registry
            .sites
            .parked_action(site, id, action.as_str(), SITE_TIMEOUT)
            .await
        {
            failed.push((site, id, f.message));
        }
    }
    let done = chosen.len() - failed.len();
    tracing::info!(
        action = action.as_str(),
        done,
        failed = failed.len(),
        "console: parked messages"
    );
    let past = match action {
        Action::Retry => "back to pending",
        Action::Discard => "discarded",
    };
    let body = html! {
        h1 { (action.verb()) }
        @if done > 0 {
            p.done #outcome { (done) " message" @if done != 1 { "s" } " " (past) "." }
        }
        @if !failed.is_empty() {
            p.error { (failed.len()) " could not be changed:" }
            table {
                thead { tr { th { "Site" } th { "Id" } th { "Why" } } }
                tbody {
                    @for (site, id, why) in &failed {
                        tr { td { (site) } td.mono { (id) } td { (why) } }
                    }
                }
            }
        }
        p { a href="/ui/parked" { "Back to parked messages" } }
    };
    layout::respond(
        StatusCode::OK,
        layout::page(action.verb(), Some(&session), Nav::Parked, None, body),
    )
}

/// One exported message.
#[derive(Debug, Serialize)]
struct Exported<'a> {
    site: &'a str,
    id: &'a str,
    category: &'a str,
    target: &'a str,
    attempts: u32,
    created: &'a str,
    parked: &'a str,
    reason: &'a str,
    payload: serde_json::Value,
}

/// One CSV field: quoted when needed, and kept from being read as a formula by a
/// spreadsheet (a leading `=`, `+`, `-`, `@` gets a `'`).
fn csv_field(text: &str) -> String {
    let guarded = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

/// `GET /ui/parked/export?format=json|csv&…filters`: every matching message.
pub(crate) async fn export(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
    Query(filter): Query<Filter>,
) -> Response {
    let format = filter.format.as_str();
    if format != "json" && format != "csv" {
        return bad_request(&session, "Export as format=json or format=csv.");
    }
    let scan = match search(&console, &filter).await {
        Ok(scan) => scan,
        Err(message) => return bad_request(&session, &message),
    };
    if !scan.problems.is_empty() {
        // An export must not look complete when a site could not be read.
        return layout::error_page(
            StatusCode::BAD_GATEWAY,
            Some(&session),
            &format!(
                "The export is incomplete, so none is given: {}",
                scan.problems.join(" ")
            ),
        );
    }
    let rows: Vec<Exported<'_>> = scan
        .items
        .iter()
        .map(|f| Exported {
            site: &f.site,
            id: &f.view.id,
            category: &f.view.category,
            target: &f.view.target,
            attempts: f.view.attempts,
            created: &f.view.created,
            parked: &f.view.parked,
            reason: &f.reason,
            payload: redact::payload(&f.view.payload),
        })
        .collect();
    let (body, content_type) = if format == "json" {
        (
            serde_json::to_string_pretty(&rows).unwrap_or_default(),
            "application/json",
        )
    } else {
        let mut out =
            String::from("site,id,category,target,attempts,created,parked,reason,payload\r\n");
        for r in &rows {
            let fields = [
                csv_field(r.site),
                csv_field(r.id),
                csv_field(r.category),
                csv_field(r.target),
                r.attempts.to_string(),
                csv_field(r.created),
                csv_field(r.parked),
                csv_field(r.reason),
                csv_field(&r.payload.to_string()),
            ];
            out.push_str(&fields.join(","));
            out.push_str("\r\n");
        }
        (out, "text/csv; charset=utf-8")
    };
    let name = format!(
        "attachment; filename=\"parked-{}.{format}\"",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    );
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    layout::secure_headers(headers);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&name) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-1,2"), "\"'-1,2\"");
    }

    #[test]
    fn filters_match_category_exactly_and_text_without_case() {
        let item = Found {
            site: "plant-a".into(),
            reason: "retries exhausted; HTTP 503 Service Unavailable".into(),
            view: ParkedView {
                id: "1".into(),
                category: "external".into(),
                target: "ERP".into(),
                attempts: 3,
                created: String::new(),
                parked: String::new(),
                reason: String::new(),
                payload: serde_json::Value::Null,
            },
        };
        let filter = |category: &str, target: &str, q: &str| Filter {
            category: category.into(),
            target: target.into(),
            q: q.into(),
            ..Filter::default()
        };
        assert!(filter("", "", "").matches(&item));
        assert!(filter("external", "erp", "service unavailable").matches(&item));
        assert!(!filter("database", "", "").matches(&item));
        assert!(!filter("", "MES", "").matches(&item));
        assert!(!filter("", "", "timeout").matches(&item));
    }

    #[test]
    fn actions_are_retry_or_discard() {
        assert_eq!(Action::parse(Some("retry")), Ok(Action::Retry));
        assert_eq!(Action::parse(Some("discard")), Ok(Action::Discard));
        assert!(Action::parse(Some("delete")).is_err());
        assert!(Action::parse(None).is_err());
    }
}
