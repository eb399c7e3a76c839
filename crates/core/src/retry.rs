//! Retry policy of a store-and-forward target (`[5.3-3-int]`, `[5.5-2-rt]`, `[6.4-2]`):
//! a fixed interval between attempts and a maximum number of retries, after which a
//! message is parked.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Fixed-interval retry with a cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries after the first failed attempt; when they are used up the message is parked.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Time between attempts.
    #[serde(default = "default_interval", with = "crate::units::duration")]
    pub interval: Duration,
    /// The longest wait a peer's `Retry-After` can impose (default 1 h): a peer that
    /// asks for years gets this, so its message is still retried and at worst parked.
    #[serde(default = "default_max_retry_after", with = "crate::units::duration")]
    pub max_retry_after: Duration,
}

/// Default cap of a peer's `Retry-After`.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

fn default_max_retry_after() -> Duration {
    DEFAULT_MAX_RETRY_AFTER
}

fn default_max_retries() -> u32 {
    10
}

fn default_interval() -> Duration {
    Duration::from_secs(30)
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: default_max_retries(),
            interval: default_interval(),
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
        }
    }
}

impl RetryPolicy {
    /// A policy with the given cap and interval.
    pub fn new(max_retries: u32, interval: Duration) -> Self {
        RetryPolicy {
            max_retries,
            interval,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
        }
    }

    /// Delay before the next attempt: the fixed interval, or the peer's `Retry-After`
    /// when it asks for longer — but never more than `max_retry_after` (nor less than
    /// the interval).
    pub fn delay(&self, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(wait) if wait > self.interval => wait.min(self.max_retry_after.max(self.interval)),
            _ => self.interval,
        }
    }

    /// Whether a message that has now failed `retries_done` retries must be parked.
    pub fn exhausted(&self, retries_done: u32) -> bool {
        retries_done >= self.max_retries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_wins_only_when_longer() {
        let policy = RetryPolicy::new(3, Duration::from_secs(30));
        assert_eq!(policy.delay(None), Duration::from_secs(30));
        assert_eq!(
            policy.delay(Some(Duration::from_secs(5))),
            Duration::from_secs(30)
        );
        assert_eq!(
            policy.delay(Some(Duration::from_secs(120))),
            Duration::from_secs(120)
        );
    }

    #[test]
    fn retry_after_is_capped() {
        let policy = RetryPolicy::new(3, Duration::from_secs(30));
        for asked in [999_999_999_999_u64, u64::MAX] {
            assert_eq!(
                policy.delay(Some(Duration::from_secs(asked))),
                DEFAULT_MAX_RETRY_AFTER
            );
        }
        let tight = RetryPolicy {
            max_retry_after: Duration::from_secs(60),
            ..policy
        };
        assert_eq!(
            tight.delay(Some(Duration::from_secs(3600))),
            Duration::from_secs(60)
        );
        // A cap below the interval never shortens the interval.
        let odd = RetryPolicy {
            max_retry_after: Duration::from_secs(1),
            ..policy
        };
        assert_eq!(
            odd.delay(Some(Duration::from_secs(90))),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn exhausted_after_max_retries() {
        let policy = RetryPolicy::new(3, Duration::from_secs(1));
        assert!(!policy.exhausted(2));
        assert!(policy.exhausted(3));
        assert!(RetryPolicy::new(0, Duration::ZERO).exhausted(0));
    }
}
