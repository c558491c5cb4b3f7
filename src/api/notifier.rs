//! `Notifier`: who is told when a LogSource stops being ready, loses data, dead-letters records,
//! falls silent, and when it recovers, without Prometheus or Alertmanager.
//!
//! The operator derives the notifications from the conditions of the LogSources the Notifier
//! selects and records what it sent in the Notifier's status; see
//! `src/operator/notifier.rs` for the delivery semantics (at least once per receiver).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::SecretKeySelector;

/// Sends a notification to each receiver when a selected LogSource changes state.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "siembridge.io",
    version = "v1alpha1",
    kind = "Notifier",
    doc = "Notifications (webhook, Microsoft Teams, Slack, e-mail) when the LogSources it selects stop being ready, lose data, dead-letter records, fall silent, and when they recover.",
    namespaced,
    status = "NotifierStatus",
    shortname = "sbnotifier",
    category = "siembridge",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Receivers","type":"integer","jsonPath":".status.receiverCount"}"#,
    printcolumn = r#"{"name":"Sent","type":"integer","jsonPath":".status.sentTotal"}"#,
    printcolumn = r#"{"name":"Failing","type":"string","jsonPath":".status.conditions[?(@.type==\"Degraded\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.receivers.all(r, self.receivers.exists_one(o, o.name == r.name))",
     "message": "receiver names must be unique"}
]))]
pub struct NotifierSpec {
    /// Where notifications go; each gets every notification.
    #[schemars(length(min = 1, max = 16))]
    pub receivers: Vec<Receiver>,
    /// Which LogSources of the Notifier's namespace it watches (labels); every one when unset
    /// or empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Which transitions notify. (Not named `on`: YAML 1.1 parsers, kubectl's and Helm's among
    /// them, read an unquoted `on` key as `true`.)
    #[serde(default)]
    pub when: NotifyOn,
    /// How many messages each receiver gets per hour at most.
    #[serde(default)]
    pub rate_limit: RateLimit,
}

/// One receiver: set exactly one of `webhook`, `teams`, `slack`, `email`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "[has(self.webhook), has(self.teams), has(self.slack), has(self.email)].filter(x, x).size() == 1",
     "message": "set exactly one of webhook, teams, slack, email"}
]))]
pub struct Receiver {
    /// Name of the receiver, shown in status and metrics.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// A generic webhook: a JSON document per notification, POSTed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookReceiver>,
    /// A Microsoft Teams incoming webhook or Workflows ("Post to a channel when a webhook
    /// request is received") URL: an Adaptive Card message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams: Option<SecretUrlReceiver>,
    /// A Slack incoming webhook URL: `{"text": ...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SecretUrlReceiver>,
    /// E-mail over SMTP with STARTTLS (or implicit TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailReceiver>,
}

/// A generic webhook: `url`, or `urlSecretRef` when the URL carries a token.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.url) != has(self.urlSecretRef)", "message": "set exactly one of url, urlSecretRef"}
]))]
pub struct WebhookReceiver {
    /// The URL, when it holds no secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^https?://"))]
    pub url: Option<String>,
    /// A Secret key holding the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeySelector>,
}

/// A webhook whose URL is a credential (Teams, Slack): always from a Secret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretUrlReceiver {
    /// A Secret key holding the webhook URL.
    pub url_secret_ref: SecretKeySelector,
}

/// E-mail over SMTP. The connection is always encrypted: STARTTLS (required, not opportunistic)
/// or, with `startTLS: false`, implicit TLS (SMTPS, usually port 465). There is no plaintext
/// mode.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmailReceiver {
    /// SMTP server host name; the server certificate must be valid for it.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// SMTP server port.
    #[serde(default = "default_smtp_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// STARTTLS on a plain connection (required: a server not offering it is an error); `false`
    /// connects with TLS from the start.
    #[serde(default = "default_true", rename = "startTLS")]
    pub start_tls: bool,
    /// Sender address.
    #[schemars(length(min = 3, max = 254))]
    pub from: String,
    /// Recipients.
    #[schemars(length(min = 1, max = 50))]
    pub to: Vec<String>,
    /// SMTP AUTH user name and password, from a Secret; no authentication when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SmtpCredentials>,
    /// A Secret key holding PEM CA certificates trusted for the server, besides the system
    /// roots (a private relay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeySelector>,
}

fn default_smtp_port() -> u16 {
    587
}

fn default_true() -> bool {
    true
}

/// Two keys of one Secret: the SMTP user name and password.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SmtpCredentials {
    /// Name of the Secret, in the Notifier's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key of the user name.
    #[serde(default = "default_username_key")]
    pub username_key: String,
    /// Key of the password.
    #[serde(default = "default_password_key")]
    pub password_key: String,
}

fn default_username_key() -> String {
    "username".into()
}

fn default_password_key() -> String {
    "password".into()
}

/// Which transitions notify. Each notifies once per transition (its `lastTransitionTime`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotifyOn {
    /// `Ready` has been `False` for this many minutes (0: at once).
    #[serde(default = "default_not_ready_minutes")]
    #[schemars(range(min = 0, max = 10080))]
    pub not_ready_minutes: u32,
    /// `DataLoss` became `True`.
    #[serde(default = "default_true")]
    pub data_loss: bool,
    /// `DeadLettered` became `True`.
    #[serde(default = "default_true")]
    pub dead_letters: bool,
    /// `SourceSilent` became `True`.
    #[serde(default = "default_true")]
    pub source_silent: bool,
    /// A condition that notified returned to normal (`Ready` `True` again, the others `False`).
    #[serde(default = "default_true")]
    pub recovery: bool,
}

fn default_not_ready_minutes() -> u32 {
    10
}

impl Default for NotifyOn {
    fn default() -> Self {
        NotifyOn {
            not_ready_minutes: default_not_ready_minutes(),
            data_loss: true,
            dead_letters: true,
            source_silent: true,
            recovery: true,
        }
    }
}

/// Messages per receiver and hour. Beyond it, the notifications due are not dropped: the last
/// message the hour allows summarises all of them, and when the hour's budget is spent they wait
/// (counted in the receiver's `pending`) for the next message the limit allows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Messages per receiver in any hour.
    #[serde(default = "default_per_hour")]
    #[schemars(range(min = 1, max = 1000))]
    pub per_hour: u32,
}

fn default_per_hour() -> u32 {
    30
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_hour: default_per_hour(),
        }
    }
}

/// What the operator sent and how each receiver fares.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotifierStatus {
    /// `Ready` (the spec is usable) and `Degraded` (a receiver is failing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Number of receivers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver_count: Option<i32>,
    /// Notifications accepted since the Notifier was created, summed over its receivers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_total: Option<i64>,
    /// The notifications sent (bounded, newest last): what keeps a restarted or new leader from
    /// sending them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sent: Vec<SentNotification>,
    /// Per receiver: counts, last error, messages of the last hour.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub receivers: Vec<ReceiverStatus>,
}

/// One notification and the receivers it reached.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SentNotification {
    /// `<logSource>/<condition>/<status>/<lastTransitionTime>`: one transition.
    pub key: String,
    /// The LogSource.
    pub log_source: String,
    /// The condition type.
    pub condition: String,
    /// `firing` or `resolved`.
    pub kind: String,
    /// `lastTransitionTime` of the condition.
    pub since: String,
    /// Receivers that accepted it.
    #[serde(default)]
    pub receivers: Vec<String>,
    /// When it was last sent.
    pub time: String,
}

/// How one receiver fares.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverStatus {
    /// The receiver's name in the spec.
    pub name: String,
    /// Notifications it accepted.
    #[serde(default)]
    pub sent: i64,
    /// Sends that failed (each retried with backoff).
    #[serde(default)]
    pub failed: i64,
    /// Notifications that went out in a summary message because of the rate limit.
    #[serde(default)]
    pub summarised: i64,
    /// Notifications due but held by the rate limit until the hour allows another message.
    #[serde(default)]
    pub pending: i64,
    /// The last failure (no URL, no credential), cleared by a success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it last accepted a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<String>,
    /// Times of the messages of the last hour (the rate limit's window).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<String>,
}

impl NotifierSpec {
    /// Every Secret the spec names.
    pub fn secret_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.receivers {
            if let Some(w) = &r.webhook {
                out.extend(w.url_secret_ref.iter().map(|s| s.name.clone()));
            }
            for s in [&r.teams, &r.slack].into_iter().flatten() {
                out.push(s.url_secret_ref.name.clone());
            }
            if let Some(e) = &r.email {
                out.extend(e.credentials_secret_ref.iter().map(|c| c.name.clone()));
                out.extend(e.ca_secret_ref.iter().map(|s| s.name.clone()));
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

impl Receiver {
    /// `webhook`, `teams`, `slack` or `email`; `None` when not exactly one is set.
    pub fn kind(&self) -> Option<&'static str> {
        let set: Vec<&'static str> = [
            (self.webhook.is_some(), "webhook"),
            (self.teams.is_some(), "teams"),
            (self.slack.is_some(), "slack"),
            (self.email.is_some(), "email"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, k)| k)
        .collect();
        match set.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}
