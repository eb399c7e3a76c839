//! Paced drain (issue 15): how fast the store-and-forward forwarder may send buffered
//! messages to one target, so that a backlog built up during an outage does not flood
//! the peer the moment it comes back. Direct calls from scripts are never paced.

use serde::{Deserialize, Serialize};

/// The pace of one target (`max_rate`, `max_in_flight` of an external system, a
/// database connection or the SMTP server). The default is unpaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Pace {
    /// Most messages per second the forwarder starts for the target; `None`: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rate: Option<f64>,
    /// Most deliveries to the target in flight at once; `None`: only the forwarder's
    /// own concurrency limits it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
}

impl Pace {
    /// Whether either limit is set.
    pub fn is_paced(&self) -> bool {
        self.max_rate.is_some() || self.max_in_flight.is_some()
    }

    /// Checks a `max_rate` value: a finite number of messages per second above zero.
    pub fn check_rate(rate: f64) -> Result<f64, String> {
        if rate.is_finite() && rate > 0.0 {
            Ok(rate)
        } else {
            Err(format!(
                "must be a number of messages per second greater than 0, found {rate}"
            ))
        }
    }

    /// Checks a `max_in_flight` value: a whole number of at least 1.
    pub fn check_in_flight(n: i64) -> Result<u32, String> {
        match u32::try_from(n) {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!("must be a whole number of at least 1, found {n}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_must_be_positive_and_finite() {
        assert_eq!(Pace::check_rate(0.5), Ok(0.5));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(Pace::check_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn in_flight_must_be_at_least_one() {
        assert_eq!(Pace::check_in_flight(1), Ok(1));
        assert!(Pace::check_in_flight(0).is_err());
        assert!(Pace::check_in_flight(-3).is_err());
        assert!(Pace::check_in_flight(1 << 40).is_err());
    }

    #[test]
    fn an_unpaced_definition_serializes_as_before() {
        assert_eq!(serde_json::to_string(&Pace::default()).unwrap(), "{}");
        let old: Pace = serde_json::from_str("{}").unwrap();
        assert!(!old.is_paced());
    }
}
