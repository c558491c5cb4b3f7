//! What can go wrong in a reconcile, and how each failure is retried.

use std::time::Duration;

use kube::runtime::controller::Action;

/// A reconcile failure. Problems in the user's resources (missing Secret, missing destination,
/// invalid spec) are not errors: they are reported as conditions and retried slowly. These are
/// the failures of the operator's own work.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// The resource has no namespace (every siembridge resource is namespaced).
    #[error("resource has no namespace")]
    NoNamespace,
    /// The resource has no uid yet, so no owner reference can point at it.
    #[error("resource has no uid yet")]
    NoOwnerReference,
    /// A child object could not be built.
    #[error(transparent)]
    Build(#[from] super::builders::BuildError),
    /// Status could not be serialized.
    #[error("cannot serialize status: {0}")]
    SerializeStatus(#[from] serde_json::Error),
}

impl Error {
    /// Label of the failure in `siembridge_operator_reconcile_failures_total{reason}`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(status)) if status.code == 403 => "forbidden",
            Error::Kube(kube::Error::Api(_)) => "api_error",
            Error::Kube(_) => "api_unreachable",
            Error::NoNamespace => "no_namespace",
            Error::NoOwnerReference => "no_owner_reference",
            Error::Build(_) => "build",
            Error::SerializeStatus(_) => "serialize_status",
        }
    }

    /// How long until the next attempt: short for transient API failures, long for what only a
    /// change of the resource can fix (a watch event triggers that reconcile earlier).
    pub fn requeue(&self) -> Action {
        let secs = match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => 1,
            Error::Kube(kube::Error::Api(status)) if status.code == 403 => 120,
            Error::Kube(_) => 15,
            Error::NoNamespace | Error::NoOwnerReference => 60,
            Error::Build(_) | Error::SerializeStatus(_) => 300,
        };
        Action::requeue(Duration::from_secs(secs))
    }
}

/// Result of a reconcile step.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> Error {
        Error::Kube(kube::Error::Api(Box::new(
            kube::core::Status::failure("synthetic", "Synthetic").with_code(code),
        )))
    }

    #[test]
    fn each_variant_has_a_bounded_requeue_and_a_label() {
        let cases = [
            (api(409), "conflict", 1),
            (api(403), "forbidden", 120),
            (api(500), "api_error", 15),
            (Error::NoNamespace, "no_namespace", 60),
            (Error::NoOwnerReference, "no_owner_reference", 60),
        ];
        for (error, label, secs) in cases {
            assert_eq!(error.metric_label(), label);
            assert_eq!(error.requeue(), Action::requeue(Duration::from_secs(secs)), "{label}");
        }
    }
}
