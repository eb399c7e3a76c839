//! The overview: every site (reachable, role, deployment revision and whether it is
//! current), its store-and-forward queues, and a plot of pending and parked messages
//! over the last hour, sampled in memory every [`SAMPLE_EVERY`]. The page reloads itself.

use super::Console;
use super::layout::{self, Nav};
use super::session::Session;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_core::Failure;
use switchyard_core::config::Config;
use switchyard_core::protocol::Health;

/// How often each site's counts are sampled for the plot.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(30);

/// Samples closer together than this replace each other.
const MIN_GAP: Duration = Duration::from_secs(10);

/// How far back the plot reaches.
const WINDOW: Duration = Duration::from_secs(3600);

/// Seconds between automatic reloads of the page.
const REFRESH_SECONDS: u32 = 30;

/// How long the page waits for a site's answer.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// One sample of a site: its pending and parked counts, or `None` when it did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    at: DateTime<Utc>,
    counts: Option<(u64, u64)>,
    /// The site's count of delivered messages since it started.
    delivered: Option<u64>,
}

impl Sample {
    fn of(at: DateTime<Utc>, health: Result<&Health, &Failure>) -> Sample {
        let health = health.ok();
        Sample {
            at,
            counts: health.map(|h| (h.pending, h.parked)),
            delivered: health.map(|h| h.delivered),
        }
    }
}

/// How far back the delivery rate looks.
const RATE_WINDOW: Duration = Duration::from_secs(300);

/// Messages delivered per second over the last few minutes of samples (since the
/// site's last restart, which resets its count); `None` until two samples are apart.
pub(crate) fn delivery_rate(samples: &[Sample]) -> Option<f64> {
    let (last_at, last) = samples
        .iter()
        .rev()
        .find_map(|s| s.delivered.map(|d| (s.at, d)))?;
    let window = chrono::Duration::from_std(RATE_WINDOW).unwrap_or_default();
    let mut first = (last_at, last);
    for sample in samples.iter().rev() {
        let Some(delivered) = sample.delivered else {
            continue;
        };
        // Older than the window, or from before a restart of the site.
        if last_at - sample.at > window || delivered > first.1 {
            break;
        }
        first = (sample.at, delivered);
    }
    let seconds = (last_at - first.0).num_milliseconds() as f64 / 1000.0;
    (seconds >= MIN_GAP.as_secs_f64()).then(|| (last - first.1) as f64 / seconds)
}

/// The last hour of samples of every site.
#[derive(Debug, Default)]
pub(crate) struct History {
    sites: Mutex<HashMap<String, VecDeque<Sample>>>,
}

impl History {
    /// Adds a sample; one taken within [`MIN_GAP`] of the last replaces it (a page
    /// view right after the sampler's tick).
    fn record(&self, site: &str, sample: Sample) {
        let mut sites = self.sites.lock().unwrap_or_else(|p| p.into_inner());
        let samples = sites.entry(site.to_string()).or_default();
        let gap = chrono::Duration::from_std(MIN_GAP).unwrap_or_default();
        if samples.back().is_some_and(|last| sample.at - last.at < gap) {
            samples.pop_back();
        }
        samples.push_back(sample);
        let oldest = sample.at - chrono::Duration::from_std(WINDOW).unwrap_or_default();
        while samples.front().is_some_and(|s| s.at < oldest) {
            samples.pop_front();
        }
    }

    fn samples(&self, site: &str) -> Vec<Sample> {
        self.sites
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(site)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Forgets sites that are no longer configured.
    fn keep_only(&self, names: &[String]) {
        self.sites
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|site, _| names.contains(site));
    }
}

/// Samples every site now and every [`SAMPLE_EVERY`], for as long as the console
/// exists. Without a tokio runtime (a router built outside one) there is no plot.
pub(crate) fn spawn_sampler(console: &Arc<Console>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let console = Arc::downgrade(console);
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(console) = console.upgrade() else {
                return;
            };
            let (names, healths) = site_healths(&console).await;
            console.history.keep_only(&names);
            let at = Utc::now();
            for (name, health) in names.iter().zip(healths) {
                console
                    .history
                    .record(name, Sample::of(at, health.as_ref()));
            }
        }
    });
}

/// Every configured site and its health, asked of all at once.
async fn site_healths(console: &Console) -> (Vec<String>, Vec<Result<Health, Failure>>) {
    let registry = console.central.registry();
    let names: Vec<String> = registry.config.sites.keys().cloned().collect();
    let healths = futures::future::join_all(
        names
            .iter()
            .map(|site| registry.sites.health(site, HEALTH_TIMEOUT)),
    )
    .await;
    (names, healths)
}

/// `GET /ui`.
pub(crate) async fn page(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
) -> Response {
    let (names, healths) = site_healths(&console).await;
    let deployments = console.central.deployments();
    let now = Utc::now();
    // What the page saw is a sample too (the plot has a point before the sampler's next).
    for (name, health) in names.iter().zip(&healths) {
        console
            .history
            .record(name, Sample::of(now, health.as_ref()));
    }
    let registry = console.central.registry();
    let body = html! {
        h1 { "Overview" }
        @if !console.central.is_active() {
            p.notice { "This central node is on standby: it deploys nothing and serves no API calls." }
        }
        @if names.is_empty() {
            p { "The configuration has no sites." }
        }
        @for (name, health) in names.iter().zip(&healths) {
            @let samples = console.history.samples(name);
            section.card {
                h2 { (name) }
                (site_status(health, delivery_rate(&samples)))
                (deployment(deployments.get(name), health))
                @if let Ok(health) = health {
                    (queues(name, health, &registry.config))
                }
                (sparkline(&samples, now))
            }
        }
        p { small { "Reloads every " (REFRESH_SECONDS) " s. Plot: the last hour, sampled every " (SAMPLE_EVERY.as_secs()) " s since central started." } }
    };
    layout::respond(
        StatusCode::OK,
        layout::page(
            "Overview",
            Some(&session),
            Nav::Overview,
            Some(REFRESH_SECONDS),
            body,
        ),
    )
}

fn site_status(health: &Result<Health, Failure>, rate: Option<f64>) -> Markup {
    match health {
        Ok(h) => html! {
            p {
                span.ok { "reachable" } " · node role: " (format!("{:?}", h.role).to_lowercase())
                " · pending " strong.pending { (h.pending) }
                " · parked " strong.parked { (h.parked) }
                " · delivering "
                @match rate {
                    Some(rate) => { strong.rate { (format!("{rate:.1}")) } " msg/s" }
                    None => { "(rate after the next sample)" }
                }
            }
        },
        Err(f) => html! { p { span.bad { "unreachable" } " · " small { (f.message) } } },
    }
}

fn short(revision: &str) -> &str {
    revision.get(..8).unwrap_or(revision)
}

fn deployment(
    state: Option<&crate::central::SiteDeployment>,
    health: &Result<Health, Failure>,
) -> Markup {
    let running = health.as_ref().ok().and_then(|h| h.revision.as_deref());
    let Some(state) = state else {
        return html! { p { "Deployment: " span.warn { "not yet attempted" } } };
    };
    let current = running == Some(state.desired.as_str());
    html! {
        p {
            "Deployment: "
            @match running {
                Some(r) => { span.mono { (short(r)) } }
                None => { "none known" }
            }
            " · "
            @if current {
                span.ok { "current" }
            } @else {
                span.warn { "not current" } " (central has " span.mono { (short(&state.desired)) } ")"
            }
            @if state.rejected.as_deref() == Some(state.desired.as_str()) {
                " · " span.bad { "the site rejected it" }
            }
        }
        @if let (false, Some(error)) = (current, &state.last_error) {
            p { small { "Last deployment error: " (error) } }
        }
    }
}

/// The configured drain pace of a queue's target, as shown: `unpaced`, or its limits.
fn pace_of(config: &Config, category: &str, target: &str) -> String {
    let pace = match category {
        "external" => config.external_systems.get(target).map(|d| d.pace),
        "database" => config.databases.get(target).map(|d| d.pace),
        "notification" => config.smtp.as_ref().map(|d| d.pace),
        _ => None,
    }
    .unwrap_or_default();
    let mut parts = Vec::new();
    if let Some(rate) = pace.max_rate {
        parts.push(format!("{rate} msg/s"));
    }
    if let Some(n) = pace.max_in_flight {
        parts.push(format!("{n} in flight"));
    }
    if parts.is_empty() {
        "unpaced".into()
    } else {
        parts.join(", ")
    }
}

fn queues(site: &str, health: &Health, config: &Config) -> Markup {
    html! {
        @if health.queues.is_empty() {
            p { small { "No messages waiting or parked." } }
        } @else {
            table {
                thead { tr { th { "Category" } th { "Target" } th { "Drain pace" } th.num { "Pending" } th.num { "Parked" } } }
                tbody {
                    @for q in &health.queues {
                        tr {
                            td { (q.category) }
                            td { (q.target) }
                            td.pace { (pace_of(config, &q.category, &q.target)) }
                            td.num { (q.pending) }
                            td.num {
                                @if q.parked > 0 {
                                    a href=(format!("/ui/parked?site={}&category={}&target={}", enc(site), enc(&q.category), enc(&q.target))) { (q.parked) }
                                } @else { "0" }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A query-string value.
pub(crate) fn enc(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

const PLOT_W: f64 = 300.0;
const PLOT_H: f64 = 48.0;

/// Pending (blue) and parked (red) over the last hour as an inline SVG; gaps where the
/// site did not answer.
pub(crate) fn sparkline(samples: &[Sample], now: DateTime<Utc>) -> Markup {
    let max = samples
        .iter()
        .filter_map(|s| s.counts)
        .map(|(p, k)| p.max(k))
        .max()
        .unwrap_or(0)
        .max(1);
    let window = WINDOW.as_secs_f64();
    let point = |s: &Sample, value: u64| {
        let age = (now - s.at).num_milliseconds() as f64 / 1000.0;
        // 3 px in from either edge, so a dot at the edge is whole.
        let x = 3.0 + ((PLOT_W - 6.0) * (1.0 - age / window)).clamp(0.0, PLOT_W - 6.0);
        let y = PLOT_H - 2.0 - (PLOT_H - 4.0) * (value as f64 / max as f64);
        format!("{x:.1},{y:.1}")
    };
    // Runs of answered samples: one polyline each.
    let runs: Vec<&[Sample]> = samples
        .split(|s| s.counts.is_none())
        .filter(|run| !run.is_empty())
        .collect();
    // A run of one sample has no line to draw: it is drawn as a dot.
    let series = |pick: fn((u64, u64)) -> u64| -> Vec<(bool, String)> {
        runs.iter()
            .map(|run| {
                let points: Vec<String> = run
                    .iter()
                    .filter_map(|s| s.counts.map(|c| point(s, pick(c))))
                    .collect();
                (points.len() == 1, points.join(" "))
            })
            .collect()
    };
    let pending = series(|c| c.0);
    let parked = series(|c| c.1);
    let last = samples.iter().rev().find_map(|s| s.counts);
    let label = match last {
        Some((p, k)) => format!("last hour: pending now {p}, parked now {k}, scale 0–{max}"),
        None => "last hour: no answer sampled yet".to_string(),
    };
    html! {
        svg.spark width=(PLOT_W) height=(PLOT_H) viewBox=(format!("0 0 {PLOT_W} {PLOT_H}")) role="img" aria-label=(label) xmlns="http://www.w3.org/2000/svg" {
            title { (label) }
            rect x="0" y="0" width=(PLOT_W) height=(PLOT_H) fill="#f4f6f8" {}
            @for (series, colour, runs) in [("pending", "#1f6feb", &pending), ("parked", "#b42318", &parked)] {
                @for (dot, points) in runs {
                    @if *dot {
                        @let (x, y) = points.split_once(',').unwrap_or(("0", "0"));
                        circle class=(series) cx=(x) cy=(y) r="2.5" fill=(colour) {}
                    } @else {
                        polyline class=(series) points=(points) fill="none" stroke=(colour) stroke-width="2" {}
                    }
                }
            }
        }
        small { span style="color:#1f6feb" { "■ pending" } " " span style="color:#b42318" { "■ parked" } " · " (label) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(now: DateTime<Utc>, minutes_ago: i64) -> DateTime<Utc> {
        now - chrono::Duration::minutes(minutes_ago)
    }

    fn delivered(now: DateTime<Utc>, minutes_ago: i64, count: Option<u64>) -> Sample {
        Sample {
            at: at(now, minutes_ago),
            counts: count.map(|_| (0, 0)),
            delivered: count,
        }
    }

    #[test]
    fn the_delivery_rate_spans_the_last_minutes_and_restarts_with_the_site() {
        let now = Utc::now();
        assert_eq!(
            delivery_rate(&[delivered(now, 0, Some(5))]),
            None,
            "one sample"
        );
        // 600 in the last two minutes; the sample from ten minutes ago is too old.
        let samples = [
            delivered(now, 10, Some(0)),
            delivered(now, 2, Some(400)),
            delivered(now, 1, None),
            delivered(now, 0, Some(1000)),
        ];
        assert_eq!(delivery_rate(&samples), Some(5.0));
        // The site restarted between the samples: only what came after counts.
        let samples = [
            delivered(now, 4, Some(9000)),
            delivered(now, 2, Some(0)),
            delivered(now, 0, Some(240)),
        ];
        assert_eq!(delivery_rate(&samples), Some(2.0));
    }

    #[test]
    fn the_plot_spans_the_hour_and_breaks_where_the_site_was_down() {
        let now = Utc::now();
        let samples = [
            Sample {
                at: at(now, 60),
                counts: Some((0, 0)),
                delivered: None,
            },
            Sample {
                at: at(now, 30),
                counts: Some((4, 2)),
                delivered: None,
            },
            Sample {
                at: at(now, 20),
                counts: None,
                delivered: None,
            },
            Sample {
                at: at(now, 0),
                counts: Some((2, 1)),
                delivered: None,
            },
        ];
        let svg = sparkline(&samples, now).into_string();
        let dot = sparkline(&samples[3..], now).into_string();
        assert!(
            dot.contains("<circle class=\"pending\" cx=\"297.0\" cy=\"2.0\""),
            "{dot}"
        );
        assert!(!dot.contains("<polyline"), "{dot}");
        // Two runs per series: a line before the gap, a dot (one sample) after it.
        for series in ["pending", "parked"] {
            assert_eq!(
                svg.matches(&format!("<polyline class=\"{series}\""))
                    .count(),
                1,
                "{svg}"
            );
            assert_eq!(
                svg.matches(&format!("<circle class=\"{series}\"")).count(),
                1,
                "{svg}"
            );
        }
        // Oldest at the left edge, the newest at the right, the largest value at the top.
        assert!(svg.contains("points=\"3.0,46.0 150.0,2.0\""), "{svg}");
        assert!(svg.contains("cx=\"297.0\" cy=\"24.0\""), "{svg}");
        assert!(
            svg.contains("pending now 2, parked now 1, scale 0–4"),
            "{svg}"
        );
        let empty = sparkline(&[], now).into_string();
        assert!(empty.contains("no answer sampled yet"), "{empty}");
    }

    #[test]
    fn history_keeps_one_hour_of_configured_sites() {
        let history = History::default();
        let now = Utc::now();
        history.record(
            "a",
            Sample {
                at: at(now, 90),
                counts: Some((1, 0)),
                delivered: None,
            },
        );
        history.record(
            "a",
            Sample {
                at: at(now, 10),
                counts: Some((2, 0)),
                delivered: None,
            },
        );
        history.record(
            "a",
            Sample {
                at: now - chrono::Duration::seconds(5),
                counts: None,
                delivered: None,
            },
        );
        // Within the minimum gap of the last one: replaces it.
        history.record(
            "a",
            Sample {
                at: now,
                counts: Some((3, 1)),
                delivered: None,
            },
        );
        history.record(
            "b",
            Sample {
                at: now,
                counts: None,
                delivered: None,
            },
        );
        let a = history.samples("a");
        assert_eq!(a.len(), 2, "{a:?}");
        assert_eq!(a[1].counts, Some((3, 1)));
        history.keep_only(&["a".to_string()]);
        assert!(history.samples("b").is_empty());
    }
}
