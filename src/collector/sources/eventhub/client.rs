//! The Event Hubs client: how it authenticates, how it is opened, and what kind of failure an
//! SDK error is (read from the error's kind and AMQP condition, never from its text).

use std::sync::Arc;

use azure_core_amqp::error::{AmqpErrorCondition, AmqpErrorKind};
use azure_core_amqp::AmqpError;
use azure_messaging_eventhubs::error::ErrorKind as SdkErrorKind;
use azure_messaging_eventhubs::{ConsumerClient, EventHubsError};

use super::{credential, Shared};
use crate::collector::secrets;

/// How the client authenticates.
pub(super) enum Credentials {
    ConnectionString(secrets::SecretValue),
    Entra(Arc<credential::EntraCredential>),
}

/// What kind of failure an SDK error is, for what the balancer does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FailureKind {
    /// Another reader took the partition (`amqp:link:stolen`, a newer epoch): ownership lost.
    Stolen,
    /// The credentials were refused (`amqp:unauthorized-access`, management 401/403).
    Unauthorized,
    /// The hub, partition or consumer group does not exist (`amqp:not-found`, 404).
    NotFound,
    /// The connection or session went away (closed, detached, dropped, idle, framing).
    Connection,
    /// The link went away (detached, closed, in a bad state).
    Link,
    /// Anything else (a timeout, an internal error of the service).
    Other,
}

impl FailureKind {
    /// The shared client may be unusable (token, entity, transport): open it afresh.
    pub(super) fn reconnect(self) -> bool {
        !matches!(self, FailureKind::Stolen | FailureKind::Other)
    }
}

/// Classify an SDK error by its kind and, for AMQP errors anywhere in its chain, by the AMQP
/// error kind and condition.
pub(super) fn classify(e: &EventHubsError) -> FailureKind {
    match &e.kind {
        SdkErrorKind::ConsumerDisconnected(_) => return FailureKind::Stolen,
        SdkErrorKind::AmqpError(a) => return classify_amqp(a),
        _ => {}
    }
    // An AMQP error further down the chain (wrapped by azure_core).
    let mut cause = std::error::Error::source(e);
    let mut depth = 0;
    while let Some(c) = cause {
        if let Some(a) = c.downcast_ref::<AmqpError>() {
            return classify_amqp(a);
        }
        depth += 1;
        if depth > 16 {
            break;
        }
        cause = c.source();
    }
    FailureKind::Other
}

fn classify_amqp(e: &AmqpError) -> FailureKind {
    match e.kind() {
        AmqpErrorKind::AmqpDescribedError(d) => condition_kind(&d.condition),
        AmqpErrorKind::ConnectionClosedByRemote(_)
        | AmqpErrorKind::ConnectionDetachedByRemote(_)
        | AmqpErrorKind::SessionClosedByRemote(_)
        | AmqpErrorKind::SessionDetachedByRemote(_)
        | AmqpErrorKind::ConnectionDropped(_)
        | AmqpErrorKind::IdleTimeoutElapsed(_)
        | AmqpErrorKind::FramingError(_) => FailureKind::Connection,
        AmqpErrorKind::LinkClosedByRemote(_)
        | AmqpErrorKind::LinkDetachedByRemote(_)
        | AmqpErrorKind::LinkStateError(_)
        | AmqpErrorKind::DetachError(_) => {
            // The remote's reason, when the detach carried one.
            described_in_chain(e).map(condition_kind).unwrap_or(FailureKind::Link)
        }
        AmqpErrorKind::ManagementStatusCode(code, _) => match u16::from(*code) {
            401 | 403 => FailureKind::Unauthorized,
            404 => FailureKind::NotFound,
            _ => FailureKind::Other,
        },
        _ => described_in_chain(e).map(condition_kind).unwrap_or(FailureKind::Other),
    }
}

/// The AMQP condition of a described error further down an AMQP error's chain.
fn described_in_chain(e: &AmqpError) -> Option<&AmqpErrorCondition> {
    let mut cause = std::error::Error::source(e);
    for _ in 0..16 {
        let c = cause?;
        if let Some(a) = c.downcast_ref::<AmqpError>() {
            if let AmqpErrorKind::AmqpDescribedError(d) = a.kind() {
                return Some(&d.condition);
            }
        }
        cause = c.source();
    }
    None
}

fn condition_kind(c: &AmqpErrorCondition) -> FailureKind {
    match c {
        AmqpErrorCondition::LinkStolen => FailureKind::Stolen,
        AmqpErrorCondition::UnauthorizedAccess => FailureKind::Unauthorized,
        AmqpErrorCondition::NotFound
        | AmqpErrorCondition::ResourceDeleted
        | AmqpErrorCondition::EntityDisabledError => FailureKind::NotFound,
        AmqpErrorCondition::ConnectionForced | AmqpErrorCondition::ConnectionFramingError => FailureKind::Connection,
        AmqpErrorCondition::LinkDetachForced => FailureKind::Link,
        _ => FailureKind::Other,
    }
}

/// A one-line description of an SDK error with the AMQP condition when there is one.
pub(super) fn describe_error(e: &EventHubsError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Open a client on the hub of `shared` with its credentials (`customEndpoint` dialled when set).
pub(super) async fn open_client(shared: &Shared) -> Result<ConsumerClient, EventHubsError> {
    let ev = &shared.spec.event_hub;
    let mut builder = ConsumerClient::builder()
        .with_consumer_group(ev.consumer_group.clone())
        .with_application_id("siembridge".to_string());
    if let Some(endpoint) = &ev.custom_endpoint {
        builder = builder.with_custom_endpoint(endpoint.clone());
    }
    match &shared.credentials {
        Credentials::ConnectionString(cs) => {
            builder
                .open_with_connection_string(cs.expose(), Some(&ev.hub_name))
                .await
        }
        Credentials::Entra(cred) => {
            builder
                .open(&ev.fully_qualified_namespace, ev.hub_name.clone(), cred.clone())
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core_amqp::AmqpDescribedError;

    fn described(condition: AmqpErrorCondition) -> EventHubsError {
        let d = AmqpDescribedError::new(condition, Some("test".into()), Default::default());
        EventHubsError::from(AmqpError::from(AmqpErrorKind::AmqpDescribedError(d)))
    }

    #[test]
    fn errors_are_classified_by_kind_and_condition() {
        assert_eq!(
            classify(&described(AmqpErrorCondition::LinkStolen)),
            FailureKind::Stolen
        );
        assert_eq!(
            classify(&described(AmqpErrorCondition::UnauthorizedAccess)),
            FailureKind::Unauthorized
        );
        assert_eq!(
            classify(&described(AmqpErrorCondition::NotFound)),
            FailureKind::NotFound
        );
        assert_eq!(
            classify(&described(AmqpErrorCondition::ServerBusyError)),
            FailureKind::Other
        );
        assert_eq!(
            classify(&EventHubsError::from(SdkErrorKind::ConsumerDisconnected(None))),
            FailureKind::Stolen
        );
        // Text that merely mentions a connection is not a connection failure.
        assert_eq!(
            classify(&EventHubsError::from(SdkErrorKind::SimpleMessage(
                "connection string ok".into()
            ))),
            FailureKind::Other
        );
        assert!(FailureKind::Unauthorized.reconnect());
        assert!(!FailureKind::Stolen.reconnect());
    }
}
