//! Prometheus metrics (`GET /metrics` on central and on every site): API calls by
//! method and status, latency, calls in flight, script pools, store-and-forward depth.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// The process-wide recorder (installed on first use; central and the sites of
/// `switchyard dev` share it).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(
                    "switchyard_api_call_duration_seconds".into(),
                ),
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0,
                ],
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed (tests): render an empty, private one.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}
