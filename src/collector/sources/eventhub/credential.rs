//! The Azure SDK's `TokenCredential` over siembridge's own client-credentials provider, so the
//! Event Hubs client gets Entra tokens from the configured authority (national clouds, a local
//! stand-in in tests) with our cache and error messages.

use std::time::Instant;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::error::ErrorKind;
use azure_core::time::{Duration, OffsetDateTime};

use crate::collector::auth::TokenProvider;

/// Entra app credentials for the SDK client.
pub struct EntraCredential {
    provider: TokenProvider,
}

impl EntraCredential {
    pub fn new(provider: TokenProvider) -> Self {
        EntraCredential { provider }
    }
}

impl std::fmt::Debug for EntraCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntraCredential")
            .field("client_id", &self.provider.client_id())
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl TokenCredential for EntraCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let scope = scopes
            .first()
            .ok_or_else(|| azure_core::Error::with_message(ErrorKind::Credential, "no scope requested"))?;
        let token = self
            .provider
            .token(scope)
            .await
            .map_err(|e| azure_core::Error::with_message(ErrorKind::Credential, e.to_string()))?;
        let left = token.expires_at.saturating_duration_since(Instant::now());
        Ok(AccessToken::new(
            token.secret().to_string(),
            OffsetDateTime::now_utc() + Duration::milliseconds(left.as_millis() as i64),
        ))
    }
}
