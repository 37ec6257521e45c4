//! The TLS configuration of jilo-store's HTTP clients (media downloads, S3).

use std::sync::Arc;

/// The TLS configuration every jilo-store client carries: rustls on ring, the platform's
/// verifier, HTTP/2 and HTTP/1.1 offered.
pub(crate) fn ring_tls() -> Result<rustls::ClientConfig, String> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_platform_verifier())
        .map_err(|e| format!("no TLS configuration could be made: {e}"))?
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tls)
}
