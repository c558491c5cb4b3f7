//! The Microsoft Graph audit log query API (`security/auditLog/queries`, PROTOCOLS.md section 3).

use super::{Source, SourceBatch, SourceContext, SourceError};
use crate::api::ManagementActivitySource;
use crate::config::SecretSource;

/// The audit log query source.
pub struct AuditLogQueryReader;

impl AuditLogQueryReader {
    pub async fn open(
        _spec: &ManagementActivitySource,
        _secrets: &SecretSource,
        _ctx: SourceContext,
    ) -> Result<Self, SourceError> {
        Err(SourceError::NotYetSupported(
            "managementActivityApi with api graphAuditLogQuery",
        ))
    }
}

#[async_trait::async_trait]
impl Source for AuditLogQueryReader {
    fn kind(&self) -> &'static str {
        "graphAuditLogQuery"
    }
    async fn next_batch(&mut self) -> Result<Option<SourceBatch>, SourceError> {
        Ok(None)
    }
}
