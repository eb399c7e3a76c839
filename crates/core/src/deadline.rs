//! Deadlines: the remaining time budget of a call, which travels with it (into
//! `Route.To` as the `x-switchyard-deadline-ms` header, into outbound calls as a cap on
//! the per-system timeout) so that nested work never outlives its caller (`[7.4-5-rt]`).

use std::time::Duration;
use tokio::time::Instant;

/// Header carrying the caller's remaining budget in milliseconds (central → site).
pub const DEADLINE_HEADER: &str = "x-switchyard-deadline-ms";

/// A point in time by which a call must be finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline {
    at: Instant,
}

/// The longest budget a deadline can have.
pub const MAX_BUDGET: Duration = Duration::from_secs(24 * 3600);

impl Deadline {
    /// A deadline `budget` from now; budgets beyond [`MAX_BUDGET`] (a day — from a
    /// header or a config, never a real need) are cut to it instead of overflowing.
    pub fn after(budget: Duration) -> Self {
        Deadline {
            at: Instant::now() + budget.min(MAX_BUDGET),
        }
    }

    /// The instant of the deadline.
    pub fn instant(&self) -> Instant {
        self.at
    }

    /// Time left (zero once passed).
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.at
    }

    /// The earlier of two optional deadlines: the smallest budget wins.
    pub fn earliest(a: Option<Deadline>, b: Option<Deadline>) -> Option<Deadline> {
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A timeout capped by this deadline.
    pub fn cap(&self, timeout: Duration) -> Duration {
        timeout.min(self.remaining())
    }

    /// The header value: remaining whole milliseconds.
    pub fn to_header_value(&self) -> String {
        self.remaining().as_millis().to_string()
    }

    /// Reads a header value written by [`Deadline::to_header_value`].
    pub fn from_header_value(value: &str) -> Result<Deadline, String> {
        let ms: u64 = value.trim().parse().map_err(|_| {
            format!("invalid {DEADLINE_HEADER} header `{value}`: expected whole milliseconds")
        })?;
        Ok(Deadline::after(Duration::from_millis(ms)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn remaining_budget_shrinks_and_travels_as_a_header() {
        let deadline = Deadline::after(Duration::from_secs(5));
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(deadline.remaining(), Duration::from_millis(3500));
        assert_eq!(deadline.to_header_value(), "3500");
        let decoded = Deadline::from_header_value("3500").unwrap();
        assert_eq!(decoded.remaining(), Duration::from_millis(3500));
        assert!(Deadline::from_header_value("soon").is_err());
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(deadline.is_expired());
        assert_eq!(deadline.remaining(), Duration::ZERO);
    }

    #[test]
    fn an_absurd_header_budget_is_capped_not_a_panic() {
        let d = Deadline::from_header_value("18446744073709551615").unwrap();
        assert!(d.remaining() <= MAX_BUDGET);
        assert!(d.remaining() > MAX_BUDGET - Duration::from_secs(60));
        assert!(Deadline::from_header_value("18446744073709551616").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn smallest_budget_wins() {
        let short = Deadline::after(Duration::from_secs(1));
        let long = Deadline::after(Duration::from_secs(9));
        assert_eq!(Deadline::earliest(Some(long), Some(short)), Some(short));
        assert_eq!(Deadline::earliest(None, Some(long)), Some(long));
        assert_eq!(short.cap(Duration::from_secs(10)), Duration::from_secs(1));
    }
}
