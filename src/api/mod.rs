//! Resource types of the `siembridge.io/v1alpha1` API and the condition helpers shared by the
//! operator, the collector and the standalone mode.

pub mod common;
pub mod conditions;
pub mod consumer_group;
pub mod destination;
pub mod log_source;
pub mod notifier;
pub mod validation;

pub use common::*;
pub use consumer_group::*;
pub use destination::*;
pub use log_source::*;
pub use notifier::*;

/// API group of every siembridge resource.
pub const GROUP: &str = "siembridge.io";
/// API version served.
pub const VERSION: &str = "v1alpha1";

/// A spec that the CRD schema could not reject but that cannot be acted on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSpec(pub String);

impl InvalidSpec {
    pub fn new(message: impl Into<String>) -> Self {
        InvalidSpec(message.into())
    }
}
