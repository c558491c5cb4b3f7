//! The Notifier controller: notifications without Prometheus.
//!
//! A `Notifier` selects LogSources of its namespace and names receivers (generic JSON webhook,
//! Microsoft Teams, Slack, e-mail over SMTP). The controller derives the notifications due from
//! the LogSources' conditions, sends them and records them in the Notifier's status.
//!
//! # What notifies
//!
//! One notification per condition transition, keyed `<logSource>/<type>/<status>/<lastTransitionTime>`:
//! - firing: `Ready=False` once it has lasted `when.notReadyMinutes` (the Notifier is requeued for
//!   that moment), `DataLoss=True`, `DeadLettered=True`, `SourceSilent=True` at once;
//! - resolved (`when.recovery`): the condition back to normal (`Ready=True`, the others `False`)
//!   after a firing notification of the same LogSource and type was sent (a `Ready=False` that
//!   recovered before `notReadyMinutes` notifies nothing, neither way).
//!
//! A condition already in a firing state when the Notifier is created notifies once.
//!
//! # Delivery: at least once per receiver, recorded in the API server
//!
//! The state is only in the Notifier's status (`status.sent`, per notification the receivers
//! that accepted it), so a restarted operator or a new leader knows what was sent from the API
//! server alone. A message is sent first and recorded right after (one status patch per
//! message): **at least once**. If the operator dies between a receiver's acceptance and the
//! patch (a window of one API request), the new leader sends that notification to that receiver
//! again; a notification is never lost to a crash. Until its own status write reaches the watch,
//! the controller reads what it wrote from memory, so a reconcile right after a send does not
//! repeat it. `status.sent` keeps the newest [`MAX_SENT`] notifications, those of conditions
//! still in the recorded state first.
//!
//! # Failures and the rate limit
//!
//! A failed send is retried with backoff (10 s doubling to 10 min, per receiver, in memory),
//! counted in the receiver's `failed` and `siembridge_notifications_total{result="error"}`, and
//! shown as its `lastError` and the Notifier's `Degraded` condition. Errors never carry a
//! webhook URL (they may hold a token) or a credential. Each receiver gets at most
//! `rateLimit.perHour` messages in any hour: when more notifications are due than the hour
//! allows, the last message allowed summarises the rest (counted in `summarised`); when the
//! hour's budget is spent they wait, counted in `pending`, for the next message allowed. None
//! is dropped.
//!
//! # Secrets
//!
//! Unlike the rest of the operator (which sees Secrets as metadata only), the Notifier
//! controller reads the Secrets a Notifier names (webhook URLs, SMTP credentials, CA
//! certificates) with a GET at send time; it keeps no copy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};

use super::children::apply_params;
use super::context::Context;
use super::error::{Error, Result};
use crate::api::conditions::{self, reasons, types, DesiredCondition};
use crate::api::{
    EmailReceiver, LogSource, Notifier, NotifierSpec, NotifierStatus, NotifyOn, Receiver, ReceiverStatus,
    SecretKeySelector, SentNotification,
};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "notifier";
/// Notifications kept in `status.sent`.
pub const MAX_SENT: usize = 500;
/// Requeue of a Notifier with nothing waiting.
const IDLE_REQUEUE: Duration = Duration::from_secs(300);
/// First retry delay of a failing receiver; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// Timeout of one send.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// The window of the rate limit.
const HOUR: Duration = Duration::from_secs(3600);
use crate::api::conditions::types::SOURCE_SILENT;

/// Firing or resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Firing,
    Resolved,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Firing => "firing",
            Kind::Resolved => "resolved",
        }
    }
}

/// One notification: a transition of one condition of one LogSource.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    pub key: String,
    pub log_source: String,
    pub namespace: String,
    pub condition: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    /// `lastTransitionTime` (RFC 3339).
    pub since: String,
    pub kind: Kind,
}

/// The condition types a Notifier watches, each with the status that fires and the delay before
/// it does.
fn watched(on: &NotifyOn) -> Vec<(&'static str, &'static str, Duration)> {
    let mut out = vec![(
        types::READY,
        "False",
        Duration::from_secs(u64::from(on.not_ready_minutes) * 60),
    )];
    if on.data_loss {
        out.push((types::DATA_LOSS, "True", Duration::ZERO));
    }
    if on.dead_letters {
        out.push((types::DEAD_LETTERED, "True", Duration::ZERO));
    }
    if on.source_silent {
        out.push((SOURCE_SILENT, "True", Duration::ZERO));
    }
    out
}

fn key(log_source: &str, c: &Condition) -> String {
    format!("{log_source}/{}/{}/{}", c.type_, c.status, c.last_transition_time.0)
}

/// The notifications due now for `log_sources` (already selected), ignoring who got them, and
/// the time until the next one falls due on its own (a `Ready=False` reaching its delay).
///
/// `sent` is what was sent before: a resolved notification is due only when the newest
/// notification sent for that LogSource and type fired before the condition recovered.
pub fn due(
    on: &NotifyOn,
    log_sources: &[LogSource],
    sent: &[SentNotification],
    now: Timestamp,
) -> (Vec<Notification>, Option<Duration>) {
    let mut out = Vec::new();
    let mut wake: Option<Duration> = None;
    for ls in log_sources {
        let name = ls.name_any();
        let namespace = ls.namespace().unwrap_or_default();
        let conds = ls.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or(&[]);
        for (type_, firing_status, delay) in watched(on) {
            let Some(c) = conditions::find(conds, type_) else {
                continue;
            };
            if c.status != "True" && c.status != "False" {
                continue;
            }
            let since = c.last_transition_time.0;
            let notification = |kind| Notification {
                key: key(&name, c),
                log_source: name.clone(),
                namespace: namespace.clone(),
                condition: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                since: since.to_string(),
                kind,
            };
            if c.status == firing_status {
                let age = now.duration_since(since).unsigned_abs();
                if age >= delay {
                    out.push(notification(Kind::Firing));
                } else {
                    let left = delay - age;
                    wake = Some(wake.map_or(left, |w| w.min(left)));
                }
            } else if on.recovery {
                // The newest notification of this LogSource and type.
                let last = sent
                    .iter()
                    .filter(|s| s.log_source == name && s.condition == type_)
                    .max_by_key(|s| s.since.parse::<Timestamp>().ok());
                let fired_before = last.is_some_and(|s| {
                    s.kind == Kind::Firing.as_str() && s.since.parse::<Timestamp>().is_ok_and(|t| t <= since)
                });
                let resolved_already = last.is_some_and(|s| s.key == key(&name, c));
                if fired_before || resolved_already {
                    out.push(notification(Kind::Resolved));
                }
            }
        }
    }
    out.sort_by(|a, b| a.since.cmp(&b.since).then_with(|| a.key.cmp(&b.key)));
    (out, wake)
}

/// What one receiver is sent next: messages of one notification each, the last one perhaps a
/// summary of several because of the rate limit.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    One(Notification),
    Summary(Vec<Notification>),
}

impl Message {
    pub fn notifications(&self) -> Vec<&Notification> {
        match self {
            Message::One(n) => vec![n],
            Message::Summary(ns) => ns.iter().collect(),
        }
    }
}

/// The messages for `pending` (the notifications this receiver has not accepted yet) when
/// `allowed` more messages fit in the hour, and how many notifications wait for the next hour.
pub fn messages(mut pending: Vec<Notification>, allowed: usize) -> (Vec<Message>, usize) {
    if allowed == 0 {
        return (Vec::new(), pending.len());
    }
    if pending.len() <= allowed {
        return (pending.into_iter().map(Message::One).collect(), 0);
    }
    let rest = pending.split_off(allowed - 1);
    let mut out: Vec<Message> = pending.into_iter().map(Message::One).collect();
    out.push(Message::Summary(rest));
    (out, 0)
}

/// Whether `receiver` accepted the notification `key`.
fn accepted(sent: &[SentNotification], key: &str, receiver: &str) -> bool {
    sent.iter()
        .any(|s| s.key == key && s.receivers.iter().any(|r| r == receiver))
}

/// Record that `receiver` accepted `n` at `now`.
fn record(status: &mut NotifierStatus, n: &Notification, receiver: &str, now: &str) {
    match status.sent.iter_mut().find(|s| s.key == n.key) {
        Some(s) => {
            if !s.receivers.iter().any(|r| r == receiver) {
                s.receivers.push(receiver.to_string());
            }
            s.time = now.to_string();
        }
        None => status.sent.push(SentNotification {
            key: n.key.clone(),
            log_source: n.log_source.clone(),
            condition: n.condition.clone(),
            kind: n.kind.as_str().to_string(),
            since: n.since.clone(),
            receivers: vec![receiver.to_string()],
            time: now.to_string(),
        }),
    }
}

/// Keep at most [`MAX_SENT`] records: those whose key is still current (the condition has not
/// moved since) are kept first, then the newest.
fn bound_sent(sent: &mut Vec<SentNotification>, current: &[String]) {
    if sent.len() <= MAX_SENT {
        return;
    }
    let mut indexed: Vec<(bool, String, usize)> = sent
        .iter()
        .enumerate()
        .map(|(i, s)| (current.contains(&s.key), s.time.clone(), i))
        .collect();
    // Current first, then newest first.
    indexed.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    let mut keep: Vec<usize> = indexed.into_iter().take(MAX_SENT).map(|(_, _, i)| i).collect();
    keep.sort_unstable();
    let old = std::mem::take(sent);
    *sent = old
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep.binary_search(i).is_ok())
        .map(|(_, s)| s)
        .collect();
}

/// The keys of every watched condition as it is now (firing or not).
fn current_keys(on: &NotifyOn, log_sources: &[LogSource]) -> Vec<String> {
    let mut out = Vec::new();
    for ls in log_sources {
        let conds = ls.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or(&[]);
        for (type_, _, _) in watched(on) {
            if let Some(c) = conditions::find(conds, type_) {
                out.push(key(&ls.name_any(), c));
            }
        }
    }
    out
}

/// The LogSources of `namespace` a Notifier selects.
pub fn selected(spec: &NotifierSpec, namespace: &str, all: Vec<LogSource>) -> Result<Vec<LogSource>, String> {
    let selector: Option<kube::core::Selector> = match &spec.selector {
        None => None,
        Some(s) => Some(kube::core::Selector::try_from(s.clone()).map_err(|e| format!("selector is not valid: {e}"))?),
    };
    Ok(all
        .into_iter()
        .filter(|ls| ls.namespace().as_deref() == Some(namespace))
        .filter(|ls| {
            selector
                .as_ref()
                .is_none_or(|s| kube::core::SelectorExt::matches(s, ls.labels()))
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Payloads

fn headline(n: &Notification) -> String {
    let state = match n.kind {
        Kind::Firing => "FIRING",
        Kind::Resolved => "RESOLVED",
    };
    format!(
        "[{state}] LogSource {}/{}: {}={} ({})",
        n.namespace, n.log_source, n.condition, n.status, n.reason
    )
}

fn details(n: &Notification) -> String {
    format!("{}\nsince {}: {}", headline(n), n.since, n.message)
}

/// One line naming the message: its subject.
pub fn subject(m: &Message) -> String {
    match m {
        Message::One(n) => headline(n),
        Message::Summary(ns) => format!(
            "[SUMMARY] {} LogSource transitions held back by the notification rate limit",
            ns.len()
        ),
    }
}

/// The plain text of a message (Slack, e-mail).
pub fn text(m: &Message) -> String {
    match m {
        Message::One(n) => details(n),
        Message::Summary(ns) => {
            let mut out = format!("{}:\n", subject(m));
            for n in ns {
                out.push_str(&format!("- {}, since {}\n", headline(n), n.since));
            }
            out
        }
    }
}

fn generic(n: &Notification) -> Value {
    json!({
        "logSource": n.log_source,
        "namespace": n.namespace,
        "condition": n.condition,
        "status": n.status,
        "reason": n.reason,
        "message": n.message,
        "since": n.since,
        "kind": n.kind.as_str(),
    })
}

/// The generic webhook document: one notification, or `{"kind": "summary", "notifications": [...]}`.
pub fn webhook_payload(m: &Message) -> Value {
    match m {
        Message::One(n) => generic(n),
        Message::Summary(ns) => json!({
            "kind": "summary",
            "count": ns.len(),
            "notifications": ns.iter().map(generic).collect::<Vec<_>>(),
        }),
    }
}

/// Slack incoming webhook: `{"text": ...}`.
pub fn slack_payload(m: &Message) -> Value {
    json!({ "text": text(m) })
}

/// Microsoft Teams: an Adaptive Card in a `message` envelope, which both Teams incoming webhooks
/// and Workflows webhook triggers accept.
pub fn teams_payload(m: &Message) -> Value {
    let mut body = vec![json!({
        "type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true, "text": subject(m),
    })];
    match m {
        Message::One(n) => {
            body.push(json!({"type": "TextBlock", "wrap": true, "text": n.message}));
            body.push(json!({"type": "FactSet", "facts": [
                {"title": "LogSource", "value": format!("{}/{}", n.namespace, n.log_source)},
                {"title": "Condition", "value": format!("{}={}", n.condition, n.status)},
                {"title": "Reason", "value": n.reason},
                {"title": "Since", "value": n.since},
            ]}));
        }
        Message::Summary(ns) => {
            for n in ns {
                body.push(
                    json!({"type": "TextBlock", "wrap": true, "text": format!("{}, since {}", headline(n), n.since)}),
                );
            }
        }
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
            }
        }]
    })
}

// ---------------------------------------------------------------------------------------------
// Sending

/// Reads the Secrets a Notifier names, at send time.
#[async_trait::async_trait]
pub trait SecretReader: Send + Sync {
    async fn read(&self, namespace: &str, selector: &SecretKeySelector) -> Result<String, String>;
}

/// A GET of the Secret from the API server.
pub struct ApiSecrets(pub kube::Client);

#[async_trait::async_trait]
impl SecretReader for ApiSecrets {
    async fn read(&self, namespace: &str, selector: &SecretKeySelector) -> Result<String, String> {
        let api: Api<Secret> = Api::namespaced(self.0.clone(), namespace);
        let secret = api
            .get_opt(&selector.name)
            .await
            .map_err(|e| format!("cannot read Secret {:?}: {}", selector.name, super::one_line(&e)))?;
        let Some(secret) = secret else {
            return Err(format!(
                "Secret {:?} not found in namespace {namespace:?}",
                selector.name
            ));
        };
        let value = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&selector.key))
            .ok_or_else(|| format!("Secret {:?} has no key {:?}", selector.name, selector.key))?;
        String::from_utf8(value.0.clone())
            .map(|s| s.trim().to_string())
            .map_err(|_| format!("Secret {:?} key {:?} is not UTF-8", selector.name, selector.key))
    }
}

/// Send one message to one receiver. The error names no URL and no credential.
pub async fn send(
    receiver: &Receiver,
    namespace: &str,
    secrets: &dyn SecretReader,
    message: &Message,
) -> Result<(), String> {
    if let Some(w) = &receiver.webhook {
        let url = match (&w.url, &w.url_secret_ref) {
            (Some(url), _) => url.clone(),
            (None, Some(s)) => secrets.read(namespace, s).await?,
            (None, None) => return Err("webhook has neither url nor urlSecretRef".into()),
        };
        return post(&url, &webhook_payload(message)).await;
    }
    if let Some(t) = &receiver.teams {
        let url = secrets.read(namespace, &t.url_secret_ref).await?;
        return post(&url, &teams_payload(message)).await;
    }
    if let Some(s) = &receiver.slack {
        let url = secrets.read(namespace, &s.url_secret_ref).await?;
        return post(&url, &slack_payload(message)).await;
    }
    if let Some(e) = &receiver.email {
        return email(e, namespace, secrets, message).await;
    }
    Err("set exactly one of webhook, teams, slack, email".into())
}

async fn post(url: &str, body: &Value) -> Result<(), String> {
    use crate::collector::destinations::http_client;
    let parsed = reqwest::Url::parse(url).map_err(|_| "the webhook URL is not a valid URL".to_string())?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("the webhook URL is neither http nor https".into());
    }
    let client = http_client::builder(SEND_TIMEOUT)
        .build()
        .map_err(|e| format!("HTTP client: {}", http_client::request_error(&e)))?;
    let response = http_client::send(client.post(parsed).json(body)).await?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(format!("HTTP {}: {}", status.as_u16(), http_client::excerpt(&body)))
}

async fn email(
    e: &EmailReceiver,
    namespace: &str,
    secrets: &dyn SecretReader,
    message: &Message,
) -> Result<(), String> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

    crate::tls::install_crypto_provider();
    let mut tls = TlsParameters::builder(e.host.clone());
    if let Some(ca) = &e.ca_secret_ref {
        let pem = secrets.read(namespace, ca).await?;
        let cert = Certificate::from_pem(pem.as_bytes())
            .map_err(|err| format!("caSecretRef {:?}: not PEM certificates: {err}", ca.name))?;
        tls = tls.add_root_certificate(cert);
    }
    let tls = tls.build_rustls().map_err(|err| format!("SMTP TLS settings: {err}"))?;
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(e.host.as_str())
        .port(e.port)
        .timeout(Some(SEND_TIMEOUT))
        .tls(if e.start_tls {
            Tls::Required(tls)
        } else {
            Tls::Wrapper(tls)
        });
    if let Some(c) = &e.credentials_secret_ref {
        let user = secrets
            .read(
                namespace,
                &SecretKeySelector {
                    name: c.name.clone(),
                    key: c.username_key.clone(),
                },
            )
            .await?;
        let password = secrets
            .read(
                namespace,
                &SecretKeySelector {
                    name: c.name.clone(),
                    key: c.password_key.clone(),
                },
            )
            .await?;
        builder = builder.credentials(Credentials::new(user, password));
    }
    let transport = builder.build();
    let mut mail = lettre::Message::builder()
        .from(e.from.parse().map_err(|err| format!("from {:?}: {err}", e.from))?)
        .subject(subject(message))
        .header(ContentType::TEXT_PLAIN);
    for to in &e.to {
        mail = mail.to(to.parse().map_err(|err| format!("to {to:?}: {err}"))?);
    }
    let mail = mail
        .body(text(message))
        .map_err(|err| format!("cannot build the e-mail: {err}"))?;
    transport
        .send(mail)
        .await
        .map(|_| ())
        .map_err(|err| crate::collector::secrets::redacted(format!("SMTP {}:{}: {}", e.host, e.port, one_line(&err))))
}

fn one_line(e: &dyn std::error::Error) -> String {
    super::one_line(e)
}

// ---------------------------------------------------------------------------------------------
// The controller

/// What the Notifier controller keeps besides the shared context.
pub struct NotifierContext {
    pub ctx: Arc<Context>,
    pub secrets: Arc<dyn SecretReader>,
    /// The status this process last wrote per Notifier (by uid): read instead of the watched
    /// one until the watch has caught up, so a reconcile right after a send does not repeat it.
    written: Mutex<HashMap<String, NotifierStatus>>,
    /// Backoff per (Notifier uid, receiver): failures in a row and when to try again.
    backoff: Mutex<HashMap<(String, String), (u32, Instant)>>,
}

impl NotifierContext {
    pub fn new(ctx: Arc<Context>, secrets: Arc<dyn SecretReader>) -> Self {
        NotifierContext {
            ctx,
            secrets,
            written: Mutex::new(HashMap::new()),
            backoff: Mutex::new(HashMap::new()),
        }
    }

    fn retry_in(&self, uid: &str, receiver: &str) -> Option<Duration> {
        let map = self.backoff.lock().ok()?;
        let (_, at) = map.get(&(uid.to_string(), receiver.to_string()))?;
        at.checked_duration_since(Instant::now())
    }

    fn failed(&self, uid: &str, receiver: &str) -> Duration {
        let Ok(mut map) = self.backoff.lock() else {
            return FIRST_BACKOFF;
        };
        let entry = map
            .entry((uid.to_string(), receiver.to_string()))
            .or_insert((0, Instant::now()));
        entry.0 = entry.0.saturating_add(1);
        let delay = FIRST_BACKOFF
            .saturating_mul(1u32 << entry.0.saturating_sub(1).min(10))
            .min(MAX_BACKOFF);
        entry.1 = Instant::now() + delay;
        delay
    }

    fn succeeded(&self, uid: &str, receiver: &str) {
        if let Ok(mut map) = self.backoff.lock() {
            map.remove(&(uid.to_string(), receiver.to_string()));
        }
    }
}

/// The Notifiers that select a LogSource (the mapper of the LogSource watch).
pub fn notifiers_of_log_source(store: &Store<Notifier>, ls: &LogSource) -> Vec<ObjectRef<Notifier>> {
    let namespace = ls.namespace().unwrap_or_default();
    store
        .state()
        .iter()
        .filter(|n| n.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|n| selected(&n.spec, &namespace, vec![ls.clone()]).is_ok_and(|s| !s.is_empty()))
        .map(|n| ObjectRef::from_obj(n.as_ref()))
        .collect()
}

fn receiver_status<'a>(status: &'a mut NotifierStatus, name: &str) -> &'a mut ReceiverStatus {
    if let Some(i) = status.receivers.iter().position(|r| r.name == name) {
        return &mut status.receivers[i];
    }
    status.receivers.push(ReceiverStatus {
        name: name.to_string(),
        ..Default::default()
    });
    let last = status.receivers.len() - 1;
    &mut status.receivers[last]
}

fn conditions_of(spec: &NotifierSpec, status: &NotifierStatus, invalid: Option<&str>) -> Vec<DesiredCondition> {
    let ready = match invalid {
        Some(m) => DesiredCondition::new(types::READY, false, reasons::INVALID_SPEC, m),
        None => DesiredCondition::new(types::READY, true, reasons::AS_EXPECTED, "notifying"),
    };
    let failing: Vec<String> = status
        .receivers
        .iter()
        .filter(|r| spec.receivers.iter().any(|s| s.name == r.name))
        .filter_map(|r| r.last_error.as_ref().map(|e| format!("{}: {e}", r.name)))
        .collect();
    let degraded = if failing.is_empty() {
        DesiredCondition::new(
            types::DEGRADED,
            false,
            reasons::AS_EXPECTED,
            "every receiver accepts notifications",
        )
    } else {
        DesiredCondition::new(types::DEGRADED, true, "ReceiverFailing", failing.join("; "))
    };
    vec![ready, degraded]
}

/// Reconcile one Notifier: send what is due, record it, requeue for what falls due next.
pub async fn reconcile(notifier: Arc<Notifier>, nctx: Arc<NotifierContext>) -> Result<Action> {
    let ctx = &nctx.ctx;
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let namespace = notifier.namespace().ok_or(Error::NoNamespace)?;
    let name = notifier.name_any();
    let uid = notifier.uid().unwrap_or_default();
    let watched_status = notifier.status.clone().unwrap_or_default();
    let before = nctx
        .written
        .lock()
        .ok()
        .and_then(|w| w.get(&uid).cloned())
        .unwrap_or_else(|| watched_status.clone());
    let mut status = before.clone();
    status.observed_generation = notifier.metadata.generation;
    status.receiver_count = Some(i32::try_from(notifier.spec.receivers.len()).unwrap_or(i32::MAX));
    status
        .receivers
        .retain(|r| notifier.spec.receivers.iter().any(|s| s.name == r.name));

    let invalid = notifier
        .spec
        .receivers
        .iter()
        .find(|r| r.kind().is_none())
        .map(|r| format!("receiver {:?}: set exactly one of webhook, teams, slack, email", r.name));
    let sources = selected(&notifier.spec, &namespace, ctx.stores.log_sources_in(&namespace));
    let (invalid, sources) = match (invalid, sources) {
        (Some(m), _) => (Some(m), Vec::new()),
        (None, Err(m)) => (Some(m), Vec::new()),
        (None, Ok(s)) => (None, s),
    };

    let now = Timestamp::now();
    let (due_now, mut wake) = due(&notifier.spec.when, &sources, &status.sent, now);
    if invalid.is_none() {
        for receiver in &notifier.spec.receivers {
            let rname = receiver.name.clone();
            let pending: Vec<Notification> = due_now
                .iter()
                .filter(|n| !accepted(&status.sent, &n.key, &rname))
                .cloned()
                .collect();
            let rs = receiver_status(&mut status, &rname);
            let hour_ago = now - HOUR;
            rs.recent.retain(|t| t.parse::<Timestamp>().is_ok_and(|t| t > hour_ago));
            if pending.is_empty() {
                rs.pending = 0;
                continue;
            }
            if let Some(left) = nctx.retry_in(&uid, &rname) {
                rs.pending = i64::try_from(pending.len()).unwrap_or(i64::MAX);
                wake = Some(wake.map_or(left, |w| w.min(left)));
                continue;
            }
            let per_hour = notifier.spec.rate_limit.per_hour as usize;
            let allowed = per_hour.saturating_sub(rs.recent.len());
            let (plan, held) = messages(pending, allowed);
            rs.pending = i64::try_from(held).unwrap_or(i64::MAX);
            if held > 0 {
                // The oldest message of the window leaves it: room for the next.
                let oldest = rs.recent.iter().filter_map(|t| t.parse::<Timestamp>().ok()).min();
                let left = oldest
                    .map(|t| (t + HOUR).duration_since(now).unsigned_abs())
                    .unwrap_or(Duration::from_secs(60));
                wake = Some(wake.map_or(left, |w| w.min(left)));
            }
            for message in plan {
                let result = send(receiver, &namespace, nctx.secrets.as_ref(), &message).await;
                let at = Timestamp::now().to_string();
                let kind = receiver.kind().unwrap_or("unknown");
                let rs = receiver_status(&mut status, &rname);
                match result {
                    Ok(()) => {
                        nctx.succeeded(&uid, &rname);
                        let count = message.notifications().len();
                        rs.sent += i64::try_from(count).unwrap_or(i64::MAX);
                        if let Message::Summary(_) = message {
                            rs.summarised += i64::try_from(count).unwrap_or(i64::MAX);
                        }
                        rs.last_error = None;
                        rs.last_success_time = Some(at.clone());
                        rs.recent.push(at.clone());
                        for n in message.notifications() {
                            record(&mut status, n, &rname, &at);
                        }
                        status.sent_total = Some(status.sent_total.unwrap_or(0) + count as i64);
                        ctx.metrics.notification(&format!("{namespace}/{name}"), &rname, "sent");
                        tracing::info!(notifier = %name, namespace, receiver = %rname, kind, subject = %subject(&message), "notification sent");
                        // Recorded at once: the window in which a crash repeats it is this write.
                        write_status(&nctx, &notifier, &uid, &mut status, &sources, invalid.as_deref()).await?;
                    }
                    Err(error) => {
                        rs.failed += 1;
                        rs.last_error = Some(conditions::bounded(&error, conditions::MAX_MESSAGE_BYTES));
                        let left = nctx.failed(&uid, &rname);
                        wake = Some(wake.map_or(left, |w| w.min(left)));
                        ctx.metrics
                            .notification(&format!("{namespace}/{name}"), &rname, "error");
                        tracing::warn!(notifier = %name, namespace, receiver = %rname, kind, %error, retry_in = ?left, "notification failed; retrying");
                        break;
                    }
                }
            }
        }
    }
    if status != before || watched_status.conditions.is_empty() {
        write_status(&nctx, &notifier, &uid, &mut status, &sources, invalid.as_deref()).await?;
    }
    Ok(Action::requeue(wake.map_or(IDLE_REQUEUE, |w| {
        w.clamp(Duration::from_secs(1), IDLE_REQUEUE)
    })))
}

async fn write_status(
    nctx: &NotifierContext,
    notifier: &Notifier,
    uid: &str,
    status: &mut NotifierStatus,
    sources: &[LogSource],
    invalid: Option<&str>,
) -> Result<()> {
    bound_sent(&mut status.sent, &current_keys(&notifier.spec.when, sources));
    let desired = conditions_of(&notifier.spec, status, invalid);
    status.conditions = conditions::merge(
        &status.conditions,
        &desired,
        notifier.metadata.generation,
        Timestamp::now(),
    );
    let api: Api<Notifier> = Api::namespaced(nctx.ctx.client.clone(), &notifier.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": Notifier::api_version(&()),
        "kind": Notifier::kind(&()),
        "status": status,
    });
    api.patch_status(&notifier.name_any(), &apply_params(), &Patch::Apply(&patch))
        .await?;
    if let Ok(mut w) = nctx.written.lock() {
        w.insert(uid.to_string(), status.clone());
    }
    Ok(())
}

/// Retry policy of a failed reconcile.
pub fn error_policy(notifier: Arc<Notifier>, error: &Error, nctx: Arc<NotifierContext>) -> Action {
    tracing::warn!(notifier = %notifier.name_any(), namespace = ?notifier.namespace(), %error, "reconcile failed");
    nctx.ctx.metrics.failure(CONTROLLER, error.metric_label());
    error.requeue()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn cond(type_: &str, status: &str, reason: &str, at: i64) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: format!("{type_} is {status}"),
            last_transition_time: Time(t(at)),
            observed_generation: Some(1),
        }
    }

    fn ls(name: &str, labels: &[(&str, &str)], conds: Vec<Condition>) -> LogSource {
        let mut ls = LogSource::new(name, Default::default());
        ls.metadata.namespace = Some("soc".into());
        ls.metadata.labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        ls.status = Some(crate::api::LogSourceStatus {
            conditions: conds,
            ..Default::default()
        });
        ls
    }

    fn on(minutes: u32) -> NotifyOn {
        NotifyOn {
            not_ready_minutes: minutes,
            ..Default::default()
        }
    }

    fn sent_from(ns: &[Notification], receiver: &str) -> Vec<SentNotification> {
        let mut status = NotifierStatus::default();
        for n in ns {
            record(&mut status, n, receiver, &t(0).to_string());
        }
        status.sent
    }

    #[test]
    fn not_ready_fires_only_after_the_delay_and_wakes_for_it() {
        let sources = vec![ls("a", &[], vec![cond("Ready", "False", "DestinationNotFound", 0)])];
        let (due_now, wake) = due(&on(10), &sources, &[], t(4 * 60));
        assert!(due_now.is_empty(), "{due_now:?}");
        assert_eq!(wake, Some(Duration::from_secs(6 * 60)));
        let (due_now, wake) = due(&on(10), &sources, &[], t(10 * 60));
        assert_eq!(due_now.len(), 1);
        assert_eq!(due_now[0].kind, Kind::Firing);
        assert_eq!(due_now[0].reason, "DestinationNotFound");
        assert_eq!(wake, None);
        // notReadyMinutes 0: at once.
        let (due_now, _) = due(&on(0), &sources, &[], t(0));
        assert_eq!(due_now.len(), 1);
    }

    #[test]
    fn recovery_follows_a_sent_firing_only() {
        let down = vec![ls("a", &[], vec![cond("Ready", "False", "DestinationNotFound", 0)])];
        let up = vec![ls("a", &[], vec![cond("Ready", "True", "AllReady", 900)])];
        // Never notified down (recovered before the delay, or no notifier then): no recovery.
        let (due_now, _) = due(&on(10), &up, &[], t(1000));
        assert!(due_now.is_empty(), "{due_now:?}");
        // Notified down: recovery is due once, then deduplicated by its key.
        let (fired, _) = due(&on(10), &down, &[], t(600));
        let sent = sent_from(&fired, "hook");
        let (due_now, _) = due(&on(10), &up, &sent, t(1000));
        assert_eq!(due_now.len(), 1);
        assert_eq!(due_now[0].kind, Kind::Resolved);
        assert!(accepted(&sent_from(&due_now, "hook"), &due_now[0].key, "hook"));
        let mut both = sent.clone();
        both.extend(sent_from(&due_now, "hook"));
        // Still due (the caller filters by receiver), but accepted by `hook` already.
        let (again, _) = due(&on(10), &up, &both, t(2000));
        assert_eq!(again.len(), 1);
        assert!(accepted(&both, &again[0].key, "hook"));
        // A second short outage that never notified: no second recovery.
        let up_again = vec![ls("a", &[], vec![cond("Ready", "True", "AllReady", 3000)])];
        let (none, _) = due(&on(10), &up_again, &both, t(4000));
        assert!(none.is_empty(), "{none:?}");
        // recovery: false
        let quiet = NotifyOn {
            recovery: false,
            ..on(10)
        };
        assert!(due(&quiet, &up, &sent, t(1000)).0.is_empty());
    }

    #[test]
    fn the_same_transition_is_one_key_whatever_the_reason_or_message() {
        let a = ls("a", &[], vec![cond("Ready", "False", "DestinationNotFound", 0)]);
        let mut b = a.clone();
        let c = &mut b.status.as_mut().unwrap().conditions[0];
        c.reason = "SecretNotFound".into();
        c.message = "other".into();
        let (x, _) = due(&on(0), &[a], &[], t(10));
        let (y, _) = due(&on(0), &[b], &[], t(10));
        assert_eq!(x[0].key, y[0].key);
        // A new transition (another time) is another key.
        let later = ls("a", &[], vec![cond("Ready", "False", "DestinationNotFound", 5)]);
        assert_ne!(due(&on(0), &[later], &[], t(10)).0[0].key, x[0].key);
    }

    #[test]
    fn data_loss_dead_letters_and_silence_fire_at_once_when_enabled() {
        let sources = vec![ls(
            "a",
            &[],
            vec![
                cond("Ready", "True", "AllReady", 0),
                cond("DataLoss", "True", "RecordsLost", 100),
                cond("DeadLettered", "True", "RecordsDeadLettered", 101),
                cond("SourceSilent", "True", "NoEvents", 102),
                cond("Lagging", "True", "LagAboveThreshold", 103),
            ],
        )];
        let (d, _) = due(&on(10), &sources, &[], t(100));
        let kinds: Vec<&str> = d.iter().map(|n| n.condition.as_str()).collect();
        assert_eq!(kinds, vec!["DataLoss", "DeadLettered", "SourceSilent"]);
        let only_loss = NotifyOn {
            dead_letters: false,
            source_silent: false,
            ..on(10)
        };
        assert_eq!(due(&only_loss, &sources, &[], t(100)).0.len(), 1);
    }

    #[test]
    fn rate_limit_summarises_the_excess_and_holds_when_spent() {
        let sources: Vec<LogSource> = (0..5)
            .map(|i| ls(&format!("s{i}"), &[], vec![cond("DataLoss", "True", "RecordsLost", i)]))
            .collect();
        let (d, _) = due(&on(10), &sources, &[], t(100));
        let (plan, held) = messages(d.clone(), 3);
        assert_eq!(held, 0);
        assert_eq!(plan.len(), 3);
        assert!(matches!(&plan[0], Message::One(n) if n.log_source == "s0"));
        let Message::Summary(rest) = &plan[2] else {
            panic!("{plan:?}")
        };
        assert_eq!(rest.len(), 3, "every notification beyond the limit is in the summary");
        let all: usize = plan.iter().map(|m| m.notifications().len()).sum();
        assert_eq!(all, 5, "none dropped");
        let (plan, held) = messages(d.clone(), 0);
        assert!(plan.is_empty());
        assert_eq!(held, 5);
        let (plan, _) = messages(d, 10);
        assert_eq!(plan.len(), 5);
    }

    #[test]
    fn selector_matches_labels_in_the_namespace() {
        let spec: NotifierSpec = serde_json::from_value(json!({
            "receivers": [{"name": "hook", "webhook": {"url": "http://127.0.0.1:1/"}}],
            "selector": {"matchLabels": {"team": "soc"}}
        }))
        .unwrap();
        let all = vec![ls("a", &[("team", "soc")], vec![]), ls("b", &[("team", "it")], vec![])];
        let picked = selected(&spec, "soc", all.clone()).unwrap();
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].name_any(), "a");
        assert!(selected(&spec, "other", all).unwrap().is_empty());
        assert_eq!(spec.when, NotifyOn::default());
        assert_eq!(spec.rate_limit.per_hour, 30);
    }

    #[test]
    fn sent_is_bounded_keeping_current_keys() {
        let mut sent: Vec<SentNotification> = (0..MAX_SENT + 50)
            .map(|i| SentNotification {
                key: format!("k{i}"),
                time: t(i as i64).to_string(),
                ..Default::default()
            })
            .collect();
        bound_sent(&mut sent, &["k0".to_string()]);
        assert_eq!(sent.len(), MAX_SENT);
        assert!(sent.iter().any(|s| s.key == "k0"), "a current key is kept");
        assert!(sent.iter().any(|s| s.key == format!("k{}", MAX_SENT + 49)));
        assert!(!sent.iter().any(|s| s.key == "k1"));
    }

    #[test]
    fn payload_shapes() {
        let n = Notification {
            key: "a/Ready/False/x".into(),
            log_source: "a".into(),
            namespace: "soc".into(),
            condition: "Ready".into(),
            status: "False".into(),
            reason: "DestinationNotFound".into(),
            message: "SiemDestination \"splunk\" not found".into(),
            since: t(0).to_string(),
            kind: Kind::Firing,
        };
        let one = Message::One(n.clone());
        let w = webhook_payload(&one);
        let keys: Vec<&str> = w.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = vec![
            "condition",
            "kind",
            "logSource",
            "message",
            "namespace",
            "reason",
            "since",
            "status",
        ];
        expected.sort();
        assert_eq!(keys, expected);
        assert_eq!(w["kind"], "firing");
        assert_eq!(w["logSource"], "a");
        let s = slack_payload(&one);
        assert!(s["text"]
            .as_str()
            .unwrap()
            .starts_with("[FIRING] LogSource soc/a: Ready=False (DestinationNotFound)"));
        let teams = teams_payload(&one);
        assert_eq!(teams["type"], "message");
        let card = &teams["attachments"][0];
        assert_eq!(card["contentType"], "application/vnd.microsoft.card.adaptive");
        assert_eq!(card["content"]["type"], "AdaptiveCard");
        assert_eq!(card["content"]["body"][0]["text"], subject(&one));
        let summary = Message::Summary(vec![
            n.clone(),
            Notification {
                kind: Kind::Resolved,
                ..n
            },
        ]);
        let w = webhook_payload(&summary);
        assert_eq!((w["kind"].as_str(), w["count"].as_u64()), (Some("summary"), Some(2)));
        assert_eq!(w["notifications"][1]["kind"], "resolved");
        assert!(text(&summary).contains("[RESOLVED]"));
    }
}
