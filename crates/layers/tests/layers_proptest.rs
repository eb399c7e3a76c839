//! Property tests of the auth, deadline and classify layers: what each promises holds
//! for any key, any budget and any status, not just the handful the unit tests pick.

use proptest::prelude::*;
use std::time::Duration;
use switchyard_core::config::Secret;
use switchyard_core::{BoxError, Deadline, Failure, FailureClass};
use switchyard_layers::auth::{KeyStore, StaticKeyStore, bearer_matches, hash_key};
use switchyard_layers::classify::{ClassifyLayer, HttpStatus, failure_of};
use switchyard_layers::deadline::{Elapsed, EnforceDeadlineLayer, HasDeadline};
use tower::{Layer, ServiceExt, service_fn};

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

struct Timed {
    timeout: Option<Duration>,
    deadline: Option<Deadline>,
}

impl HasDeadline for Timed {
    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
    fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A key authenticates exactly when it is the stored key and the key is enabled.
    #[test]
    fn auth_accepts_exactly_the_stored_enabled_key(
        stored in "[ -~]{1,40}",
        presented in "[ -~]{0,40}",
        enabled in any::<bool>(),
    ) {
        let mut keys = StaticKeyStore::default();
        keys.add_key("k", &hash_key(&stored), enabled).unwrap();
        let accepted = keys.authenticate(&presented).is_some();
        prop_assert_eq!(accepted, enabled && presented == stored);
        prop_assert!(keys.authenticate(&stored).is_some() == enabled);
    }

    /// A bearer header matches exactly the configured token; a missing header never does.
    #[test]
    fn bearer_matches_exactly_the_token(
        token in "[!-~]{12,40}",
        presented in "[!-~]{0,40}",
    ) {
        let expected = Secret::new(token.clone());
        let mut headers = http::HeaderMap::new();
        prop_assert!(!bearer_matches(&headers, &expected));
        headers.insert("authorization", format!("Bearer {presented}").parse().unwrap());
        prop_assert_eq!(bearer_matches(&headers, &expected), presented == token);
    }

    /// A request ends by the smallest of its timeout, its caller's budget and the layer's
    /// default — never later, and a quicker service is never cut.
    #[test]
    fn deadline_cuts_at_the_smallest_budget(
        work_ms in 0u64..5_000,
        timeout_ms in proptest::option::of(1u64..5_000),
        budget_ms in proptest::option::of(1u64..5_000),
        default_ms in proptest::option::of(1u64..5_000),
    ) {
        let runtime = paused_runtime();
        let outcome = runtime.block_on(async {
            let svc = EnforceDeadlineLayer::new(default_ms.map(Duration::from_millis)).layer(
                service_fn(move |_: Timed| async move {
                    tokio::time::sleep(Duration::from_millis(work_ms)).await;
                    Ok::<_, BoxError>(())
                }),
            );
            let request = Timed {
                timeout: timeout_ms.map(Duration::from_millis),
                deadline: budget_ms.map(|ms| Deadline::after(Duration::from_millis(ms))),
            };
            svc.oneshot(request).await
        });
        let own = timeout_ms.or(default_ms);
        let limit = [own, budget_ms].into_iter().flatten().min();
        match (limit, outcome) {
            (None, result) => prop_assert!(result.is_ok()),
            (Some(limit), Ok(())) => prop_assert!(work_ms <= limit),
            (Some(limit), Err(e)) => {
                let elapsed = e.downcast_ref::<Elapsed>().expect("an Elapsed");
                prop_assert!(work_ms >= limit);
                prop_assert_eq!(elapsed.budget, Duration::from_millis(limit));
            }
        }
    }

    /// Every status classifies per KDD-ext-3: 2xx pass, 408/429/5xx transient, every
    /// other status permanent; `Retry-After` is kept only on 429 and 503.
    #[test]
    fn every_status_is_classified(status in 100u16..600, retry_after in proptest::option::of(0u64..100_000)) {
        let runtime = paused_runtime();
        let result = runtime.block_on(async move {
            let svc = ClassifyLayer::new(HttpStatus).layer(service_fn(move |_: ()| async move {
                let mut response = http::Response::builder().status(status);
                if let Some(s) = retry_after {
                    response = response.header("retry-after", s.to_string());
                }
                Ok::<_, BoxError>(response.body(()).unwrap())
            }));
            svc.oneshot(()).await
        });
        match result {
            Ok(_) => prop_assert!((200..300).contains(&status)),
            Err(e) => {
                prop_assert!(!(200..300).contains(&status));
                let failure = e.downcast_ref::<Failure>().expect("a Failure");
                let transient = matches!(status, 408 | 429 | 500..=599);
                prop_assert_eq!(failure.class == FailureClass::Transient, transient);
                prop_assert_eq!(failure.status, Some(status));
                let kept = matches!(status, 429 | 503) && retry_after.is_some();
                prop_assert_eq!(failure.retry_after.is_some(), kept);
            }
        }
    }

    /// Whatever an unclassified error says, it is transient: kept, never dropped.
    #[test]
    fn unclassified_errors_are_transient(text in ".{0,80}") {
        let error: BoxError = text.into();
        prop_assert_eq!(failure_of(&*error).class, FailureClass::Transient);
    }
}
