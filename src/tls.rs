//! Process-wide TLS set-up.

/// Both rustls back-ends end up in the build (kube asks for ring, reqwest's default for
/// aws-lc-rs), so rustls cannot pick one itself: choose ring, once per process. Every
/// subcommand calls this before opening a connection.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
