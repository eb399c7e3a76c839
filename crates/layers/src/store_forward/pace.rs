//! Paced drain: the forwarder's per-lane limits. A *lane* is what one pace is set on —
//! an external system, a database connection, the SMTP server — and the targets of its
//! messages drain through it at most `max_rate` messages per second and
//! `max_in_flight` at once. Unpaced targets have no lane and drain as before.
//!
//! The rate is enforced with the generic cell rate algorithm (a token bucket kept as one
//! instant): a message may start when the lane's theoretical next start is at most
//! [`TOLERANCE`] away, which absorbs late wake-ups without letting the average exceed
//! the rate. Every attempt counts, retries included; waiting for the pace is never an
//! attempt, so it never brings a message closer to being parked.

use super::message::{Category, StoredMessage};
use std::collections::HashMap;
use std::time::Duration;
use switchyard_core::Pace;
use tokio::time::Instant;

/// How early a paced message may start before its exact turn: the burst a lane allows
/// after it was idle (`1 + max_rate × 0.1` messages) and the slack for late wake-ups.
pub const TOLERANCE: Duration = Duration::from_millis(100);

/// Tells the forwarder which lane a target drains through, and at what pace. Read for
/// every message it considers, so a new deployment's pace applies at once.
pub trait Pacing: Send + Sync + 'static {
    /// The lane of `target`; `None`: unpaced.
    fn lane(&self, category: Category, target: &str) -> Option<Lane>;
}

impl<F> Pacing for F
where
    F: Fn(Category, &str) -> Option<Lane> + Send + Sync + 'static,
{
    fn lane(&self, category: Category, target: &str) -> Option<Lane> {
        self(category, target)
    }
}

/// A paced lane.
#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    /// The category of the targets that share it.
    pub category: Category,
    /// What the pace is set on: the system or connection name, or `smtp`.
    pub name: String,
    /// Its limits.
    pub pace: Pace,
}

/// Identifies a lane inside the forwarder.
pub(super) type LaneKey = (Category, String);

/// Where a lane stands.
#[derive(Debug)]
struct LaneState {
    pace: Pace,
    /// When the next message may start exactly on the rate (minus [`TOLERANCE`]).
    next_start: Instant,
    in_flight: u32,
    /// The due key from which this lane's refill walk resumes: every message of the
    /// lane behind the forwarder's frontier that is neither delivered nor in flight
    /// lies at or after it. `None`: the lane has nothing waiting behind the frontier.
    backlog: Option<[u8; 24]>,
    /// A target of the lane, to ask the pacing again (the pace may change or go).
    sample: (Category, String),
}

impl LaneState {
    fn new(pace: Pace, now: Instant, sample: (Category, String)) -> Self {
        LaneState {
            pace,
            next_start: now,
            in_flight: 0,
            backlog: None,
            sample,
        }
    }

    fn interval(&self) -> Option<Duration> {
        self.pace
            .max_rate
            .map(|rate| Duration::from_secs_f64(1.0 / rate))
    }

    fn has_room(&self) -> bool {
        self.pace
            .max_in_flight
            .is_none_or(|max| self.in_flight < max)
    }

    /// When a message could start, or `None` while the lane is full of deliveries.
    fn ready_at(&self) -> Option<Instant> {
        if !self.has_room() {
            return None;
        }
        Some(match self.interval() {
            Some(_) => self
                .next_start
                .checked_sub(TOLERANCE)
                .unwrap_or(self.next_start),
            None => self.next_start,
        })
    }

    /// Starts a message if the pace allows it now.
    fn try_start(&mut self, now: Instant) -> bool {
        if self.ready_at().is_none_or(|at| at > now) {
            return false;
        }
        if let Some(interval) = self.interval() {
            self.next_start = self.next_start.max(now) + interval;
        }
        self.in_flight += 1;
        true
    }

    /// Applies a changed pace without losing the lane's place.
    fn update(&mut self, pace: Pace, now: Instant) {
        if self.pace != pace {
            self.pace = pace;
            let longest_wait = self.interval().unwrap_or_default();
            self.next_start = self.next_start.min(now + longest_wait);
        }
    }
}

/// What the forwarder does with a due message.
#[derive(Debug, PartialEq)]
pub(super) enum Decision {
    /// Deliver it now (counted against its lane, if it has one, until released).
    Start(Option<LaneKey>),
    /// Leave it pending: its lane has no room yet.
    Wait(LaneKey),
}

/// Every lane the forwarder has met.
pub(super) struct Lanes {
    pacing: Option<Box<dyn Pacing>>,
    states: HashMap<LaneKey, LaneState>,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes")
            .field("paced", &self.pacing.is_some())
            .field("lanes", &self.states.len())
            .finish()
    }
}

impl Lanes {
    pub(super) fn new(pacing: Option<Box<dyn Pacing>>) -> Self {
        Lanes {
            pacing,
            states: HashMap::new(),
        }
    }

    /// Decides about `message`, whose due key is `key`. A lane's messages start in due
    /// order: one that is newer than the lane's waiting backlog waits behind it.
    pub(super) fn consider(
        &mut self,
        message: &StoredMessage,
        key: [u8; 24],
        now: Instant,
    ) -> Decision {
        let Some(lane) = self
            .pacing
            .as_ref()
            .and_then(|p| p.lane(message.category, &message.target))
            .filter(|lane| lane.pace.is_paced())
        else {
            return Decision::Start(None);
        };
        let id = (lane.category, lane.name);
        let state = self.states.entry(id.clone()).or_insert_with(|| {
            LaneState::new(lane.pace, now, (message.category, message.target.clone()))
        });
        state.update(lane.pace, now);
        if state.backlog.is_some_and(|from| from < key) {
            return Decision::Wait(id);
        }
        if state.try_start(now) {
            if state.backlog == Some(key) {
                state.backlog = Some(next_key(key));
            }
            Decision::Start(Some(id))
        } else {
            // Lower is always safe: the refill walk merely starts earlier.
            state.backlog = Some(state.backlog.map_or(key, |from| from.min(key)));
            Decision::Wait(id)
        }
    }

    /// A delivery of `lane` finished.
    pub(super) fn release(&mut self, lane: &LaneKey) {
        if let Some(state) = self.states.get_mut(lane) {
            state.in_flight = state.in_flight.saturating_sub(1);
        }
    }

    /// A lane with messages waiting behind the frontier that could start one now, and
    /// where its walk resumes; the lane waiting longest first. Asks the pacing for the
    /// current pace of every lane with a backlog first: a lane whose pace was taken
    /// away is unpaced, and its backlog goes as fast as the forwarder.
    pub(super) fn refillable(&mut self, now: Instant) -> Option<(LaneKey, [u8; 24])> {
        if let Some(pacing) = &self.pacing {
            for state in self.states.values_mut().filter(|s| s.backlog.is_some()) {
                let (category, target) = &state.sample;
                let pace = pacing
                    .lane(*category, target)
                    .map(|lane| lane.pace)
                    .unwrap_or_default();
                state.update(pace, now);
            }
        }
        self.states
            .iter()
            .filter(|(_, s)| s.ready_at().is_some_and(|at| at <= now))
            .filter_map(|(id, s)| s.backlog.map(|from| (from, id)))
            .min()
            .map(|(from, id)| (id.clone(), from))
    }

    /// How many messages `lane` could start now (at least 1, for a walk to look at).
    pub(super) fn room(&self, lane: &LaneKey, now: Instant) -> usize {
        let Some(state) = self.states.get(lane) else {
            return 1;
        };
        let by_flight = state.pace.max_in_flight.map_or(usize::MAX, |max| {
            max.saturating_sub(state.in_flight) as usize
        });
        let by_rate = match state.interval() {
            Some(interval) if !interval.is_zero() => {
                let ahead = (now + TOLERANCE).saturating_duration_since(state.next_start);
                (ahead.as_secs_f64() / interval.as_secs_f64()) as usize + 1
            }
            _ => usize::MAX,
        };
        by_flight.min(by_rate).max(1)
    }

    /// Moves `lane`'s walk to `key`: nothing of the lane waits before it.
    pub(super) fn walked_to(&mut self, lane: &LaneKey, key: [u8; 24]) {
        if let Some(state) = self.states.get_mut(lane)
            && state.backlog.is_some_and(|from| from < key)
        {
            state.backlog = Some(key);
        }
    }

    /// `lane` has nothing left behind the frontier.
    pub(super) fn caught_up(&mut self, lane: &LaneKey) {
        if let Some(state) = self.states.get_mut(lane) {
            state.backlog = None;
        }
    }

    /// Whether any lane has messages waiting behind the frontier.
    pub(super) fn any_backlog(&self) -> bool {
        self.states.values().any(|s| s.backlog.is_some())
    }

    /// The earliest time a lane with a backlog can start a message (for the
    /// forwarder's sleep); `None` when no such lane has room.
    pub(super) fn next_ready(&self) -> Option<Instant> {
        self.states
            .values()
            .filter(|s| s.backlog.is_some())
            .filter_map(LaneState::ready_at)
            .min()
    }

    /// Forgets where every lane's backlog is (the forwarder then walks everything
    /// again from the start and finds them anew).
    pub(super) fn forget_backlogs(&mut self) {
        for state in self.states.values_mut() {
            state.backlog = None;
        }
    }
}

/// The smallest due key after `key`.
pub(super) fn next_key(mut key: [u8; 24]) -> [u8; 24] {
    for byte in key.iter_mut().rev() {
        let (next, overflow) = byte.overflowing_add(1);
        *byte = next;
        if !overflow {
            break;
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::{MessageId, RetryPolicy};

    fn message(target: &str) -> StoredMessage {
        StoredMessage {
            id: MessageId::new(),
            category: Category::External,
            target: target.into(),
            payload: serde_json::Value::Null,
            retry: RetryPolicy::default(),
            created_ms: 0,
            attempts: 0,
            due_ms: 0,
            last_error: None,
        }
    }

    fn paced(rate: Option<f64>, in_flight: Option<u32>) -> Lanes {
        Lanes::new(Some(Box::new(move |category, target: &str| {
            (target == "ERP").then(|| Lane {
                category,
                name: target.to_string(),
                pace: Pace {
                    max_rate: rate,
                    max_in_flight: in_flight,
                },
            })
        })))
    }

    fn key(n: u8) -> [u8; 24] {
        let mut k = [0u8; 24];
        k[23] = n;
        k
    }

    #[test]
    fn next_key_carries() {
        let mut k = [0u8; 24];
        k[23] = 0xff;
        let mut want = [0u8; 24];
        want[22] = 1;
        assert_eq!(next_key(k), want);
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_allows_a_small_burst_then_one_per_interval() {
        let mut lanes = paced(Some(100.0), None);
        let now = Instant::now();
        let started = (0..50)
            .filter(|i| {
                matches!(
                    lanes.consider(&message("ERP"), key(*i), now),
                    Decision::Start(_)
                )
            })
            .count();
        // 100 ms of tolerance at 10 ms per message, plus the one due now.
        assert_eq!(started, 11);
        assert_eq!(lanes.refillable(now), None);
        let later = now + Duration::from_millis(10);
        assert_eq!(lanes.refillable(later).map(|r| r.1), Some(key(11)));
        assert_eq!(lanes.room(&(Category::External, "ERP".into()), later), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_is_limited_and_released() {
        let mut lanes = paced(None, Some(1));
        let now = Instant::now();
        let lane = (Category::External, "ERP".to_string());
        assert_eq!(
            lanes.consider(&message("ERP"), key(1), now),
            Decision::Start(Some(lane.clone()))
        );
        assert_eq!(
            lanes.consider(&message("ERP"), key(2), now),
            Decision::Wait(lane.clone())
        );
        assert_eq!(lanes.next_ready(), None, "full of deliveries");
        lanes.release(&lane);
        assert_eq!(lanes.refillable(now), Some((lane, key(2))));
    }

    #[tokio::test(start_paused = true)]
    async fn newer_messages_wait_behind_the_backlog_and_others_pass() {
        let mut lanes = paced(None, Some(1));
        let now = Instant::now();
        let lane = (Category::External, "ERP".to_string());
        lanes.consider(&message("ERP"), key(1), now);
        lanes.consider(&message("ERP"), key(2), now);
        lanes.release(&lane);
        assert_eq!(
            lanes.consider(&message("ERP"), key(3), now),
            Decision::Wait(lane.clone()),
            "key 2 goes first"
        );
        assert_eq!(
            lanes.consider(&message("MES"), key(4), now),
            Decision::Start(None)
        );
        assert_eq!(
            lanes.consider(&message("ERP"), key(2), now),
            Decision::Start(Some(lane.clone()))
        );
        assert_eq!(lanes.refillable(now), None);
        lanes.release(&lane);
        assert_eq!(lanes.refillable(now), Some((lane, next_key(key(2)))));
    }

    #[tokio::test(start_paused = true)]
    async fn without_pacing_everything_starts() {
        let mut lanes = Lanes::new(None);
        let now = Instant::now();
        for i in 0..100 {
            assert_eq!(
                lanes.consider(&message("ERP"), key(i), now),
                Decision::Start(None)
            );
        }
        assert!(!lanes.any_backlog());
    }
}
