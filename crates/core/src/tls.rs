//! TLS set-up shared by every client: the `ring` rustls provider (no cmake/aws-lc build).

/// Installs the `ring` crypto provider as the process default (idempotent). Call before
/// building any TLS client.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
