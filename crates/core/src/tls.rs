//! TLS set-up shared by every client: the `ring` rustls provider (no cmake/aws-lc build).

/// Installs the `ring` crypto provider as the process default (idempotent). Call before
/// building any TLS client.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The server side of a TLS cluster link: the node's certificate chain and private key
/// (PEM files), TLS 1.2/1.3 with the `ring` provider, HTTP/1.1.
pub fn server_config(
    tls: &crate::config::ClusterTls,
) -> Result<std::sync::Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    install_crypto_provider();
    let certs = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("tls.cert {}: {e}", tls.cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls.cert {}: no certificate in the file",
            tls.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| format!("tls.key {}: {e}", tls.key.display()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls.cert/tls.key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(std::sync::Arc::new(config))
}

/// The CA a client verifies a cluster node's certificate against (PEM).
pub fn ca_certificate(path: &std::path::Path) -> Result<reqwest::Certificate, String> {
    let pem = std::fs::read(path).map_err(|e| format!("tls.ca {}: {e}", path.display()))?;
    reqwest::Certificate::from_pem(&pem).map_err(|e| format!("tls.ca {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/certs")
            .join(name)
    }

    #[test]
    fn the_test_pki_loads_and_bad_files_are_named() {
        let good = crate::config::ClusterTls {
            cert: fixture("server.pem"),
            key: fixture("server.key"),
            ca: fixture("ca.pem"),
        };
        assert!(server_config(&good).is_ok());
        assert!(ca_certificate(&good.ca).is_ok());
        let swapped = crate::config::ClusterTls {
            cert: fixture("server.key"),
            ..good.clone()
        };
        let err = server_config(&swapped).unwrap_err();
        assert!(err.contains("tls.cert"), "{err}");
        let missing = fixture("nope.pem");
        assert!(ca_certificate(&missing).unwrap_err().contains("nope.pem"));
    }
}
