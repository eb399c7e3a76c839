//! Classifiers: which peer errors are transient and which are permanent
//! (`KDD-ext-3`, `CD-NS-3`, `CD-NS-4`, `[5.6-5]`).

use crate::error::{Failure, FailureClass, codes};
use std::time::Duration;

/// HTTP status → class (`KDD-ext-3`): 408, 429 and every 5xx are transient; every other
/// non-success status is permanent.
pub fn http_status(status: u16) -> FailureClass {
    match status {
        408 | 429 | 500..=599 => FailureClass::Transient,
        _ => FailureClass::Permanent,
    }
}

/// The failure for a non-success HTTP response. `retry_after` is honoured for 429 and 503.
pub fn http_failure(status: u16, reason: &str, retry_after: Option<Duration>) -> Failure {
    let class = http_status(status);
    let message = if reason.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {reason}")
    };
    let retry_after = if matches!(status, 429 | 503) {
        retry_after
    } else {
        None
    };
    Failure {
        class,
        code: codes::HTTP_STATUS.into(),
        status: Some(status),
        message,
        retry_after,
    }
}

/// Parses an HTTP `Retry-After` value given in seconds (the HTTP-date form is rare for
/// APIs and is ignored).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// A reqwest transport error → failure. Connection problems and timeouts are transient;
/// a response body that cannot be decoded or a request that cannot be built is permanent.
pub fn reqwest_error(err: &reqwest::Error) -> Failure {
    // reqwest's Display can include the URL; URLs carry no secrets here (credentials
    // travel in headers), but keep the message about the cause.
    let cause = error_chain(err);
    if err.is_timeout() {
        Failure::transient(codes::TIMEOUT, format!("timed out: {cause}"))
    } else if err.is_connect() {
        Failure::transient(codes::CONNECTION, format!("connection failed: {cause}"))
    } else if err.is_decode() {
        Failure::permanent(
            codes::BAD_RESPONSE,
            format!("undecodable response: {cause}"),
        )
    } else if err.is_builder() || err.is_redirect() {
        Failure::permanent(codes::CONNECTION, format!("invalid request: {cause}"))
    } else if let Some(status) = err.status() {
        http_failure(status.as_u16(), "", None)
    } else {
        // Request/body errors: the connection broke while sending or receiving.
        Failure::transient(codes::CONNECTION, format!("connection error: {cause}"))
    }
}

/// Any transport error → failure, by walking its cause chain: a [`Failure`] already in
/// the chain wins, then reqwest and I/O errors are classified by what they are; anything
/// else is treated as transient (it will be retried, then parked — never dropped).
pub fn any_error(err: &(dyn std::error::Error + 'static)) -> Failure {
    if let Some(failure) = Failure::find(err) {
        return failure.clone();
    }
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(r) = e.downcast_ref::<reqwest::Error>() {
            return reqwest_error(r);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io_error(io);
        }
        current = e.source();
    }
    Failure::transient(codes::CONNECTION, error_chain(err))
}

/// An I/O error → failure: timeouts are `TIMEOUT`, everything else `CONNECTION`; both
/// transient.
pub fn io_error(err: &std::io::Error) -> Failure {
    match err.kind() {
        std::io::ErrorKind::TimedOut => {
            Failure::transient(codes::TIMEOUT, format!("timed out: {err}"))
        }
        _ => Failure::transient(codes::CONNECTION, format!("connection failed: {err}")),
    }
}

/// The messages of an error and its sources, joined with `: `.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// SMTP reply code → class (`CD-NS-3`, `CD-NS-4`): 4xx transient (including throttling),
/// 5xx permanent.
pub fn smtp_reply(code: u16) -> FailureClass {
    match code {
        400..=499 => FailureClass::Transient,
        _ => FailureClass::Permanent,
    }
}

/// PostgreSQL SQLSTATE → class. Connection exceptions, serialization failures and
/// deadlocks, resource shortages, shutdowns and lock/statement timeouts are transient;
/// syntax, constraint, permission and data errors are permanent.
pub fn sqlstate(code: &str) -> FailureClass {
    let transient = code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources
        || code.starts_with("58") // system error (I/O)
        || matches!(
            code,
            "40001" // serialization_failure
                | "40P01" // deadlock_detected
                | "55P03" // lock_not_available
                | "57014" // query_canceled (statement timeout)
                | "57P01" // admin_shutdown
                | "57P02" // crash_shutdown
                | "57P03" // cannot_connect_now
                | "57P05" // idle_session_timeout
        );
    if transient {
        FailureClass::Transient
    } else {
        FailureClass::Permanent
    }
}

/// SQLite primary result code → class. A busy or locked database and I/O failures are
/// transient; everything else (syntax, constraints, misuse) is permanent.
pub fn sqlite_code(primary: i32) -> FailureClass {
    const SQLITE_BUSY: i32 = 5;
    const SQLITE_LOCKED: i32 = 6;
    const SQLITE_IOERR: i32 = 10;
    const SQLITE_FULL: i32 = 13;
    const SQLITE_CANTOPEN: i32 = 14;
    const SQLITE_PROTOCOL: i32 = 15;
    match primary {
        SQLITE_BUSY | SQLITE_LOCKED | SQLITE_IOERR | SQLITE_FULL | SQLITE_CANTOPEN
        | SQLITE_PROTOCOL => FailureClass::Transient,
        _ => FailureClass::Permanent,
    }
}

/// MS SQL Server error number → class. Deadlock victims, lock and query timeouts,
/// unavailable databases (including Azure SQL's throttling and failover numbers) are
/// transient; login failures, syntax and constraint errors are permanent.
pub fn mssql_error(number: u32) -> FailureClass {
    match number {
        1205 // deadlock victim
        | 1222 // lock request timeout
        | 233 | 64 | 10053 | 10054 | 10060 | 10928 | 10929 // connection / resource limits
        | 4060 // cannot open database (often: still recovering)
        | 40143 | 40197 | 40501 | 40540 | 40613 | 49918 | 49919 | 49920 // Azure SQL transient
        | 4221 // login timeout waiting for HADR replica
        | 615 | 926 | 942 | 945 | 952 | 983 | 976 | 978 => FailureClass::Transient,
        _ => FailureClass::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureClass::{Permanent, Transient};

    #[test]
    fn http_statuses_follow_kdd_ext_3() {
        let table = [
            (400, Permanent),
            (401, Permanent),
            (403, Permanent),
            (404, Permanent),
            (405, Permanent),
            (409, Permanent),
            (408, Transient),
            (422, Permanent),
            (429, Transient),
            (500, Transient),
            (502, Transient),
            (503, Transient),
            (504, Transient),
            (599, Transient),
            (301, Permanent),
        ];
        for (status, class) in table {
            assert_eq!(http_status(status), class, "HTTP {status}");
        }
    }

    #[test]
    fn retry_after_is_kept_only_where_it_means_back_off() {
        let wait = Some(Duration::from_secs(7));
        assert_eq!(http_failure(429, "", wait).retry_after, wait);
        assert_eq!(http_failure(503, "", wait).retry_after, wait);
        assert_eq!(http_failure(500, "", wait).retry_after, None);
        assert_eq!(parse_retry_after(" 12 "), Some(Duration::from_secs(12)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn error_chains_are_classified_by_their_causes() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let f = any_error(&refused);
        assert_eq!((f.class, f.code.as_str()), (Transient, codes::CONNECTION));
        let timeout = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
        assert_eq!(any_error(&timeout).code, codes::TIMEOUT);
        let inner = Failure::permanent(codes::BAD_RESPONSE, "garbage");
        assert_eq!(any_error(&inner), inner);
    }

    #[test]
    fn smtp_replies() {
        for (code, class) in [
            (421, Transient),
            (450, Transient),
            (451, Transient),
            (452, Transient),
            (454, Transient),
            (500, Permanent),
            (535, Permanent),
            (550, Permanent),
            (552, Permanent),
            (554, Permanent),
        ] {
            assert_eq!(smtp_reply(code), class, "SMTP {code}");
        }
    }

    #[test]
    fn sqlstates() {
        for (code, class) in [
            ("08006", Transient),
            ("08001", Transient),
            ("40P01", Transient),
            ("40001", Transient),
            ("53300", Transient),
            ("57P01", Transient),
            ("57014", Transient),
            ("42601", Permanent), // syntax error
            ("23505", Permanent), // unique violation
            ("23503", Permanent), // foreign key violation
            ("42P01", Permanent), // undefined table
            ("28P01", Permanent), // invalid password
            ("22P02", Permanent), // invalid text representation
        ] {
            assert_eq!(sqlstate(code), class, "SQLSTATE {code}");
        }
    }

    #[test]
    fn sqlite_codes() {
        for (code, class) in [
            (5, Transient),
            (6, Transient),
            (10, Transient),
            (14, Transient),
            (1, Permanent),
            (19, Permanent),
            (20, Permanent),
            (21, Permanent),
        ] {
            assert_eq!(sqlite_code(code), class, "SQLite {code}");
        }
    }

    #[test]
    fn mssql_numbers() {
        for (n, class) in [
            (1205, Transient),
            (1222, Transient),
            (40613, Transient),
            (4060, Transient),
            (18456, Permanent),
            (102, Permanent),
            (2627, Permanent),
            (547, Permanent),
            (208, Permanent),
        ] {
            assert_eq!(mssql_error(n), class, "MSSQL {n}");
        }
    }
}
