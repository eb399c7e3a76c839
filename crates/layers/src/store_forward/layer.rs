use super::StoreForward;
use tower_layer::Layer;

/// Applies [`StoreForward`] to a service.
#[derive(Debug, Clone)]
pub struct StoreForwardLayer<O> {
    outbox: O,
}

impl<O> StoreForwardLayer<O> {
    /// Buffers into `outbox`.
    pub fn new(outbox: O) -> Self {
        StoreForwardLayer { outbox }
    }
}

impl<S, O: Clone> Layer<S> for StoreForwardLayer<O> {
    type Service = StoreForward<S, O>;

    fn layer(&self, inner: S) -> Self::Service {
        StoreForward::new(inner, self.outbox.clone())
    }
}
