//! Spec fragments shared by the three resources and by the collector configuration.
//!
//! A field here means the same thing in a CRD spec and in the rendered collector config, so the
//! collector reads exactly what the user wrote. Defaults live in this file and nowhere else.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A key of a Secret in the same namespace as the resource that names it.
///
/// siembridge never accepts a credential inline: the operator mounts the Secret into the collector
/// pod and the collector reads the key from the mounted file.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    /// Name of the Secret, in the namespace of the resource.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Which Microsoft cloud a tenant lives in. It selects login, Graph, Management API and Azure
/// Monitor hosts; tokens are not interchangeable across clouds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Cloud {
    /// Global / commercial cloud.
    #[default]
    Commercial,
    /// US Government Community Cloud (moderate).
    Gcc,
    /// US Government GCC High.
    GccHigh,
    /// US Department of Defense.
    Dod,
    /// China, operated by 21Vianet.
    China,
}

/// An Entra ID application used with the OAuth 2.0 client-credentials flow.
///
/// Exactly one of `clientSecret`, `clientCertificate` or `workloadIdentity` is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "[has(self.clientSecret), has(self.clientCertificate), has(self.workloadIdentity) && self.workloadIdentity].filter(x, x).size() == 1",
     "message": "set exactly one of clientSecret, clientCertificate or workloadIdentity"}
]))]
pub struct EntraCredentials {
    /// Directory (tenant) id, a GUID or a verified domain. Tenant-specific: `common` is rejected by
    /// the client-credentials grant.
    #[schemars(length(min = 1, max = 253))]
    pub tenant_id: String,
    /// Application (client) id of the app registration.
    #[schemars(length(min = 1, max = 253))]
    pub client_id: String,
    /// Secret key holding the client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<SecretKeySelector>,
    /// Certificate credential: a PEM certificate and its private key, used to sign a client
    /// assertion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<ClientCertificate>,
    /// Use Azure workload identity: the federated token projected into the pod is exchanged for
    /// an access token. The collector ServiceAccount must be federated with the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity: Option<bool>,
    /// Microsoft cloud of the tenant.
    #[serde(default)]
    pub cloud: Cloud,
    /// Override of the token endpoint authority, e.g. for a proxy. Defaults to the cloud's login
    /// host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub authority_host: Option<String>,
}

/// Credentials for Azure Blob Storage. Exactly one is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "[has(self.connectionString), has(self.sasToken), has(self.entra)].filter(x, x).size() == 1",
     "message": "set exactly one of connectionString, sasToken or entra"}
]))]
pub struct BlobCredentials {
    /// Secret key holding a storage connection string (account name and key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_string: Option<SecretKeySelector>,
    /// Secret key holding a SAS token (without leading `?`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sas_token: Option<SecretKeySelector>,
    /// Entra app with Storage Blob Data Contributor on the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entra: Option<EntraCredentials>,
}

impl BlobCredentials {
    /// Every Secret key these credentials read.
    pub fn secret_refs(&self) -> Vec<&SecretKeySelector> {
        let mut refs: Vec<&SecretKeySelector> = self.connection_string.iter().chain(&self.sas_token).collect();
        if let Some(e) = &self.entra {
            refs.extend(e.secret_refs());
        }
        refs
    }
}

impl EntraCredentials {
    /// Every Secret key these credentials read.
    pub fn secret_refs(&self) -> Vec<&SecretKeySelector> {
        let mut refs: Vec<&SecretKeySelector> = self.client_secret.iter().collect();
        if let Some(cert) = &self.client_certificate {
            refs.push(&cert.certificate);
            refs.push(&cert.private_key);
        }
        refs
    }
}

/// A certificate credential for an Entra app.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientCertificate {
    /// Secret key holding the PEM certificate.
    pub certificate: SecretKeySelector,
    /// Secret key holding the PEM private key.
    pub private_key: SecretKeySelector,
}

/// TLS settings for a connection siembridge opens. Server verification is on unless explicitly
/// disabled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.clientCertificate) == has(self.clientKey)",
     "message": "clientCertificate and clientKey are set together"}
]))]
pub struct TlsSpec {
    /// Secret key holding PEM CA certificates that verify the server, added to the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<SecretKeySelector>,
    /// Secret key holding a PEM client certificate for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<SecretKeySelector>,
    /// Secret key holding the PEM private key of the client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<SecretKeySelector>,
    /// Name expected in the server certificate, when it differs from the host connected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Disable verification of the server certificate. Only for tests; reported in status.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

/// How events are grouped before a send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchSpec {
    /// Most events in one request.
    #[serde(default = "BatchSpec::default_max_events")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_events: u32,
    /// Most encoded bytes in one request.
    #[serde(default = "BatchSpec::default_max_bytes")]
    #[schemars(range(min = 1024, max = 104857600))]
    pub max_bytes: u64,
    /// Longest time an event waits for its batch to fill, in milliseconds.
    #[serde(default = "BatchSpec::default_max_latency_ms")]
    #[schemars(range(min = 1, max = 600000))]
    pub max_latency_ms: u64,
}

impl BatchSpec {
    fn default_max_events() -> u32 {
        500
    }
    fn default_max_bytes() -> u64 {
        1024 * 1024
    }
    fn default_max_latency_ms() -> u64 {
        1000
    }
}

impl Default for BatchSpec {
    fn default() -> Self {
        BatchSpec {
            max_events: Self::default_max_events(),
            max_bytes: Self::default_max_bytes(),
            max_latency_ms: Self::default_max_latency_ms(),
        }
    }
}

/// Retries of a failed send: exponential backoff with full jitter, `Retry-After` honoured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetrySpec {
    /// First backoff, in milliseconds.
    #[serde(default = "RetrySpec::default_initial_backoff_ms")]
    #[schemars(range(min = 1, max = 3600000))]
    pub initial_backoff_ms: u64,
    /// Longest backoff, in milliseconds; also the longest wait a receiver's `Retry-After` gets.
    #[serde(default = "RetrySpec::default_max_backoff_ms")]
    #[schemars(range(min = 1, max = 3600000))]
    pub max_backoff_ms: u64,
    /// Attempts before a retriable failure is dead-lettered. Unset: retry until delivered, which
    /// holds the checkpoint back and applies back-pressure. Attempts refused for their
    /// credentials (401/403) do not count: those events are never dead-lettered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_attempts: Option<u32>,
    /// Timeout of one request, in milliseconds.
    #[serde(default = "RetrySpec::default_request_timeout_ms")]
    #[schemars(range(min = 100, max = 600000))]
    pub request_timeout_ms: u64,
}

impl RetrySpec {
    fn default_initial_backoff_ms() -> u64 {
        500
    }
    fn default_max_backoff_ms() -> u64 {
        60_000
    }
    fn default_request_timeout_ms() -> u64 {
        30_000
    }
}

impl Default for RetrySpec {
    fn default() -> Self {
        RetrySpec {
            initial_backoff_ms: Self::default_initial_backoff_ms(),
            max_backoff_ms: Self::default_max_backoff_ms(),
            max_attempts: None,
            request_timeout_ms: Self::default_request_timeout_ms(),
        }
    }
}

/// What a destination does when its buffer is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OverflowPolicy {
    /// Stop taking events: the source slows down (no loss, other destinations of the same source
    /// wait too once their own buffers drain).
    #[default]
    Block,
    /// Dead-letter events that do not fit (to the LogSource's `deadLetter` destination, else the
    /// collector's dead-letter files), so the other destinations keep flowing. Counted in the
    /// LogSource's `eventsDeadLettered` and its `DeadLettered` condition.
    DeadLetter,
}

/// The per-destination buffer between the router and the sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BufferSpec {
    /// Most events held for this destination (queued and in flight).
    #[serde(default = "BufferSpec::default_max_events")]
    #[schemars(range(min = 1, max = 10000000))]
    pub max_events: u32,
    /// What happens when the buffer is full.
    #[serde(default)]
    pub when_full: OverflowPolicy,
}

impl BufferSpec {
    fn default_max_events() -> u32 {
        10_000
    }
}

impl Default for BufferSpec {
    fn default() -> Self {
        BufferSpec {
            max_events: Self::default_max_events(),
            when_full: OverflowPolicy::Block,
        }
    }
}

/// CPU and memory of the collector pods, as in a container's `resources`.
pub type Resources = k8s_openapi::api::core::v1::ResourceRequirements;

/// How the collector pods of a resource are shaped: scheduling, pulling, environment and the
/// metadata platform tooling expects. The chart's `collectorPod` value gives the defaults of every
/// collector pod; a resource's `podTemplate` overrides them field by field (maps are merged, the
/// resource's keys winning; `env` is merged by name; every other list, when set, replaces the
/// default). Labels the operator selects pods by cannot be overridden.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CollectorPodTemplate {
    /// Extra labels of the collector pods.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Extra annotations of the collector pods.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
    /// Pull secrets for a private registry (names of Secrets in the resource's namespace).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<k8s_openapi::api::core::v1::LocalObjectReference>,
    /// Node labels the pods must run on.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub node_selector: std::collections::BTreeMap<String, String>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<k8s_openapi::api::core::v1::Toleration>,
    /// Node and pod affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<k8s_openapi::api::core::v1::Affinity>,
    /// How replicas spread over zones or nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<k8s_openapi::api::core::v1::TopologySpreadConstraint>,
    /// PriorityClass of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Extra environment of the collector container, e.g. `HTTPS_PROXY` and `NO_PROXY`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<k8s_openapi::api::core::v1::EnvVar>,
    /// CPU and memory of the collector container (the resource's own `resources` field, where it
    /// has one, takes precedence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Annotations of the collector ServiceAccount (e.g. for cloud IAM bindings).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub service_account_annotations: std::collections::BTreeMap<String, String>,
}

impl CollectorPodTemplate {
    /// `self` (the defaults) overridden by `over` (a resource's `podTemplate`).
    pub fn overridden_by(&self, over: Option<&CollectorPodTemplate>) -> CollectorPodTemplate {
        let Some(over) = over else { return self.clone() };
        fn map(
            a: &std::collections::BTreeMap<String, String>,
            b: &std::collections::BTreeMap<String, String>,
        ) -> std::collections::BTreeMap<String, String> {
            a.iter().chain(b).map(|(k, v)| (k.clone(), v.clone())).collect()
        }
        fn list<T: Clone>(a: &[T], b: &[T]) -> Vec<T> {
            if b.is_empty() {
                a.to_vec()
            } else {
                b.to_vec()
            }
        }
        let mut env = self.env.clone();
        for e in &over.env {
            match env.iter_mut().find(|x| x.name == e.name) {
                Some(x) => *x = e.clone(),
                None => env.push(e.clone()),
            }
        }
        CollectorPodTemplate {
            labels: map(&self.labels, &over.labels),
            annotations: map(&self.annotations, &over.annotations),
            image_pull_secrets: list(&self.image_pull_secrets, &over.image_pull_secrets),
            node_selector: map(&self.node_selector, &over.node_selector),
            tolerations: list(&self.tolerations, &over.tolerations),
            affinity: over.affinity.clone().or_else(|| self.affinity.clone()),
            topology_spread_constraints: list(&self.topology_spread_constraints, &over.topology_spread_constraints),
            priority_class_name: over
                .priority_class_name
                .clone()
                .or_else(|| self.priority_class_name.clone()),
            env,
            resources: over.resources.clone().or_else(|| self.resources.clone()),
            service_account_annotations: map(&self.service_account_annotations, &over.service_account_annotations),
        }
    }
}
