//! Stand-in of Azure Event Hubs as an AMQP 1.0 client sees it (docs/PROTOCOLS.md sections 0 and 6),
//! built on the `fe2o3-amqp` acceptor and listening on plain AMQP on 127.0.0.1.
//!
//! What it does: SASL `ANONYMOUS` / `MSSBCBS` / `PLAIN` (all accepted; authorization is by CBS);
//! `$cbs` put-token with SAS verification (HMAC over `sr` and `se`, policy rights) and Entra
//! `jwt` tokens checked against the Entra stand-in; `$management` READ of hub and partition
//! properties; partition receivers on `<hub>/ConsumerGroups/<cg>/Partitions/<p>` honouring the
//! selector filter (offset, sequence number, enqueued time, `-1`, `@latest`) with typed
//! `x-opt-*` annotations; epochs (`com.microsoft:epoch`): a higher-or-equal epoch detaches the
//! older reader with `amqp:link:stolen`; at most 5 non-epoch readers per partition per group
//! (`amqp:resource-limit-exceeded`); `amqp:not-found` for an unknown hub, group or partition,
//! `amqp:unauthorized-access` without a valid token (also when it expires: links are detached);
//! senders on `<hub>` or `<hub>/Partitions/<p>` (including the batch format `0x80013700`) so
//! official producers can publish. Tests publish in-process with [`HubState::publish`] too.
//!
//! Wire details as the service (Microsoft.Azure.Amqp) has them, which clients other than the
//! Rust SDK rely on (tests/eventhub_python.rs drives the Python SDK): every described list goes
//! out with all its fields (fe2o3 drops trailing nulls, see [`full_field_frames`]), `begin`
//! carries an explicit `handle-max`, `$cbs`/`$management` requests without `reply-to` are
//! answered on the receiving link attached from the same node, received transfers are settled
//! at once and sent ones go pre-settled, a SAS token covers every entity under its resource URI
//! (the Python consumer signs for `<hub>/consumergroups/<cg>`), and one partition key always
//! lands on one partition.
//!
//! For the rebalance tests it records, per partition, how many times two links were sending at
//! the same time (`overlaps`, must stay 0 for a correct load balancer) and how many readers were
//! detached by a newer epoch (`steals`).
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fe2o3_amqp::acceptor::sasl_acceptor::SaslServerFrame;
use fe2o3_amqp::acceptor::{
    ConnectionAcceptor, LinkAcceptor, LinkEndpoint, ListenerSessionHandle, SaslAcceptor, SessionAcceptor,
    SupportedReceiverSettleModes, SupportedSenderSettleModes,
};
use fe2o3_amqp::link::delivery::Sendable;
use fe2o3_amqp::types::definitions::{
    AmqpError, Error as AmqpLinkError, ErrorCondition, LinkError, ReceiverSettleMode, Role, SenderSettleMode,
};
use fe2o3_amqp::types::messaging::{
    AmqpValue, ApplicationProperties, Body, Data, Message, MessageAnnotations, Properties,
};
use fe2o3_amqp::types::primitives::{Array, Binary, OrderedMap, SimpleValue, Symbol, Timestamp, Value};
use fe2o3_amqp::types::sasl::{SaslCode, SaslInit, SaslOutcome, SaslResponse};
use tokio::sync::{mpsc, oneshot, watch};

use crate::common::entra::EntraState;

/// Scope Entra tokens for Event Hubs are issued for.
pub const EVENTHUBS_SCOPE: &str = "https://eventhubs.azure.net/.default";
const BATCH_FORMAT: u32 = 0x8001_3700;
const MAX_NON_EPOCH_READERS: usize = 5;

/// Rights of a shared access policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rights {
    pub listen: bool,
    pub send: bool,
}

impl Rights {
    pub const LISTEN: Rights = Rights {
        listen: true,
        send: false,
    };
    pub const SEND: Rights = Rights {
        listen: false,
        send: true,
    };
    pub const MANAGE: Rights = Rights {
        listen: true,
        send: true,
    };
}

/// An event to append: body, partition key, application properties.
type NewEvent = (Bytes, Option<String>, Option<ApplicationProperties>);

/// One stored event.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    pub sequence_number: i64,
    /// Byte offset in the partition (the service's `x-opt-offset`, as a decimal string).
    pub offset: i64,
    pub enqueued_ms: i64,
    pub body: Bytes,
    pub partition_key: Option<String>,
    pub properties: Option<ApplicationProperties>,
}

/// A partition's log and who reads it.
pub struct Partition {
    log: RwLock<Vec<StoredEvent>>,
    next_offset: AtomicU64,
    grown: watch::Sender<usize>,
    /// Links currently in their sending loop.
    sending: AtomicUsize,
    /// Two links sending at once (per consumer group would be finer; tests use one group).
    pub overlaps: AtomicU64,
}

impl Partition {
    fn new() -> Self {
        Partition {
            log: RwLock::new(Vec::new()),
            next_offset: AtomicU64::new(0),
            grown: watch::channel(0).0,
            sending: AtomicUsize::new(0),
            overlaps: AtomicU64::new(0),
        }
    }

    /// Events stored.
    pub fn len(&self) -> usize {
        self.log.read().unwrap().len()
    }

    /// A copy of the events stored.
    pub fn events(&self) -> Vec<StoredEvent> {
        self.log.read().unwrap().clone()
    }

    fn append(&self, events: Vec<NewEvent>) {
        if events.is_empty() {
            return;
        }
        let now = now_ms();
        let mut log = self.log.write().unwrap();
        for (body, partition_key, properties) in events {
            let offset = self.next_offset.fetch_add(body.len().max(1) as u64, Ordering::Relaxed) as i64;
            let sequence_number = log.len() as i64;
            log.push(StoredEvent {
                sequence_number,
                offset,
                enqueued_ms: now,
                body,
                partition_key,
                properties,
            });
        }
        let len = log.len();
        drop(log);
        self.grown.send_replace(len);
    }

    /// Index of the first event a selector filter selects.
    fn start_index(&self, filter: Option<&str>) -> Result<usize, String> {
        let log = self.log.read().unwrap();
        let Some(expr) = filter else {
            return Ok(0);
        };
        let (field, rest) = expr
            .trim()
            .strip_prefix("amqp.annotation.")
            .and_then(|s| s.split_once(' '))
            .ok_or_else(|| format!("unsupported filter {expr:?}"))?;
        let rest = rest.trim();
        let (inclusive, value) = if let Some(v) = rest.strip_prefix(">=") {
            (true, v)
        } else if let Some(v) = rest.strip_prefix('>') {
            (false, v)
        } else {
            return Err(format!("unsupported filter operator in {expr:?}"));
        };
        let value = value.trim().trim_matches('\'');
        match field {
            "x-opt-offset" => match value {
                "-1" => Ok(0),
                "@latest" => Ok(log.len()),
                v => {
                    let off: i64 = v.parse().map_err(|_| format!("bad offset {v:?}"))?;
                    Ok(log.partition_point(|e| if inclusive { e.offset < off } else { e.offset <= off }))
                }
            },
            "x-opt-sequence-number" => {
                let seq: i64 = value.parse().map_err(|_| format!("bad sequence number {value:?}"))?;
                let first = if inclusive { seq } else { seq + 1 };
                Ok(first.clamp(0, log.len() as i64) as usize)
            }
            "x-opt-enqueued-time" | "x-opt-enqueuedtimeutc" => {
                let ms: i64 = value.parse().map_err(|_| format!("bad enqueued time {value:?}"))?;
                Ok(log.partition_point(|e| {
                    if inclusive {
                        e.enqueued_ms < ms
                    } else {
                        e.enqueued_ms <= ms
                    }
                }))
            }
            other => Err(format!("unsupported filter field {other:?}")),
        }
    }
}

struct Hub {
    name: String,
    partitions: Vec<Arc<Partition>>,
    groups: HashSet<String>,
    created_ms: i64,
    round_robin: AtomicUsize,
}

struct Reader {
    id: u64,
    epoch: Option<i64>,
    stop: Option<oneshot::Sender<AmqpLinkError>>,
    stopped: watch::Receiver<bool>,
}

/// Everything the stand-in knows; shared with the test.
pub struct HubState {
    pub namespace: String,
    hubs: RwLock<HashMap<String, Arc<Hub>>>,
    policies: Mutex<HashMap<String, (String, Rights)>>,
    /// Entra tokens are checked against this stand-in when set.
    pub entra: Mutex<Option<Arc<EntraState>>>,
    readers: Mutex<HashMap<(String, String, usize), Vec<Reader>>>,
    next_id: AtomicU64,
    /// Readers detached by a newer epoch.
    pub steals: AtomicU64,
    /// Receiver attaches accepted.
    pub reader_attaches: AtomicU64,
    /// put-token requests refused.
    pub refused_tokens: AtomicU64,
    /// Events delivered to receivers.
    pub delivered: AtomicU64,
    /// Refuse every new connection (simulates an outage) while set.
    pub refuse_connections: AtomicBool,
}

impl HubState {
    /// Add a hub with `partitions` partitions and the consumer groups (`$Default` always).
    pub fn add_hub(&self, name: &str, partitions: usize, groups: &[&str]) {
        let mut set: HashSet<String> = groups.iter().map(|g| g.to_ascii_lowercase()).collect();
        set.insert("$default".into());
        let hub = Hub {
            name: name.to_string(),
            partitions: (0..partitions).map(|_| Arc::new(Partition::new())).collect(),
            groups: set,
            created_ms: now_ms(),
            round_robin: AtomicUsize::new(0),
        };
        self.hubs
            .write()
            .unwrap()
            .insert(name.to_ascii_lowercase(), Arc::new(hub));
    }

    /// Add (or replace) a shared access policy.
    pub fn add_policy(&self, name: &str, key: &str, rights: Rights) {
        self.policies
            .lock()
            .unwrap()
            .insert(name.to_string(), (key.to_string(), rights));
    }

    /// Add a consumer group to a hub.
    pub fn add_group(&self, hub: &str, group: &str) {
        let mut hubs = self.hubs.write().unwrap();
        if let Some(h) = hubs.get_mut(&hub.to_ascii_lowercase()) {
            let mut new = Hub {
                name: h.name.clone(),
                partitions: h.partitions.clone(),
                groups: h.groups.clone(),
                created_ms: h.created_ms,
                round_robin: AtomicUsize::new(0),
            };
            new.groups.insert(group.to_ascii_lowercase());
            *h = Arc::new(new);
        }
    }

    fn hub(&self, name: &str) -> Option<Arc<Hub>> {
        self.hubs.read().unwrap().get(&name.to_ascii_lowercase()).cloned()
    }

    /// A partition of a hub.
    pub fn partition(&self, hub: &str, id: usize) -> Arc<Partition> {
        self.hub(hub).expect("hub exists").partitions[id].clone()
    }

    /// Publish bodies into one partition (`Some`) or round robin (`None`).
    pub fn publish(&self, hub: &str, partition: Option<usize>, bodies: Vec<Bytes>) {
        let hub = self.hub(hub).expect("hub exists");
        match partition {
            Some(p) => hub.partitions[p].append(bodies.into_iter().map(|b| (b, None, None)).collect()),
            None => {
                let n = hub.partitions.len();
                let mut per: Vec<Vec<NewEvent>> = (0..n).map(|_| Vec::new()).collect();
                for b in bodies {
                    let p = hub.round_robin.fetch_add(1, Ordering::Relaxed) % n;
                    per[p].push((b, None, None));
                }
                for (p, events) in per.into_iter().enumerate() {
                    hub.partitions[p].append(events);
                }
            }
        }
    }

    /// Events stored per partition.
    pub fn partition_lengths(&self, hub: &str) -> Vec<usize> {
        self.hub(hub)
            .expect("hub exists")
            .partitions
            .iter()
            .map(|p| p.len())
            .collect()
    }

    /// Sum of overlaps over every partition of a hub.
    pub fn overlaps(&self, hub: &str) -> u64 {
        self.hub(hub)
            .expect("hub exists")
            .partitions
            .iter()
            .map(|p| p.overlaps.load(Ordering::Relaxed))
            .sum()
    }

    /// Readers attached now, per partition, for a hub and group.
    pub fn readers(&self, hub: &str, group: &str) -> Vec<usize> {
        let h = self.hub(hub).expect("hub exists");
        let readers = self.readers.lock().unwrap();
        (0..h.partitions.len())
            .map(|p| {
                readers
                    .get(&(hub.to_ascii_lowercase(), group.to_ascii_lowercase(), p))
                    .map(|v| v.len())
                    .unwrap_or(0)
            })
            .collect()
    }
}

/// A running stand-in.
pub struct EventHubsStandIn {
    pub addr: SocketAddr,
    pub state: Arc<HubState>,
}

impl EventHubsStandIn {
    /// Start on 127.0.0.1:0 for namespace `namespace` (e.g. `contoso-ns.servicebus.windows.net`).
    pub async fn start(namespace: &str) -> EventHubsStandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(HubState {
            namespace: namespace.to_string(),
            hubs: RwLock::default(),
            policies: Mutex::default(),
            entra: Mutex::default(),
            readers: Mutex::default(),
            next_id: AtomicU64::new(1),
            steals: AtomicU64::new(0),
            reader_attaches: AtomicU64::new(0),
            refused_tokens: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            refuse_connections: AtomicBool::new(false),
        });
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                if st.refuse_connections.load(Ordering::Relaxed) {
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let st = st.clone();
                tokio::spawn(async move { serve_connection(stream, st).await });
            }
        });
        EventHubsStandIn { addr, state }
    }

    /// `amqp://127.0.0.1:PORT`, the custom endpoint clients dial.
    pub fn endpoint(&self) -> String {
        format!("amqp://{}", self.addr)
    }

    /// A connection string for `policy` and `key`, with `EntityPath` when `hub` is given.
    pub fn connection_string(&self, policy: &str, key: &str, hub: Option<&str>) -> String {
        let mut s = format!(
            "Endpoint=sb://{}/;SharedAccessKeyName={policy};SharedAccessKey={key}",
            self.state.namespace
        );
        if let Some(h) = hub {
            s.push_str(&format!(";EntityPath={h}"));
        }
        s
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

/// Every mechanism Event Hubs offers; authorization happens through `$cbs`.
#[derive(Clone, Debug, Default)]
struct CbsSasl;

impl SaslAcceptor for CbsSasl {
    fn mechanisms(&self) -> Array<Symbol> {
        Array::from(vec![
            Symbol::from("MSSBCBS"),
            Symbol::from("ANONYMOUS"),
            Symbol::from("PLAIN"),
        ])
    }
    fn on_init(&mut self, _init: SaslInit) -> SaslServerFrame {
        SaslServerFrame::Outcome(SaslOutcome {
            code: SaslCode::Ok,
            additional_data: None,
        })
    }
    fn on_response(&mut self, _response: SaslResponse) -> SaslServerFrame {
        SaslServerFrame::Outcome(SaslOutcome {
            code: SaslCode::Ok,
            additional_data: None,
        })
    }
}

/// A token put on a connection.
#[derive(Clone, Debug)]
struct Grant {
    /// `host/path` in lower case, without scheme.
    audience: String,
    rights: Rights,
    expires_ms: i64,
}

/// Per-connection state.
#[derive(Default)]
struct Conn {
    grants: Mutex<Vec<Grant>>,
    /// Reply links by their target address, and by `node:<node>` for requests without `reply-to`.
    replies: Mutex<HashMap<String, mpsc::Sender<Message<Body<Value>>>>>,
}

impl Conn {
    /// Whether a valid token covers the entity `ns/path` with the needed right: SAS tokens are
    /// valid for every entity under their resource URI (case-insensitive, whole path segments).
    fn allows(&self, resource: &str, need: fn(&Rights) -> bool) -> bool {
        let now = now_ms();
        // Compare entity paths: clients sign for the host they dial (an emulator address).
        let path = |s: &str| -> String {
            s.to_ascii_lowercase()
                .split_once('/')
                .map(|(_, p)| p.trim_matches('/').to_string())
                .unwrap_or_default()
        };
        let resource = path(resource);
        self.grants.lock().unwrap().iter().any(|g| {
            let scope = path(&g.audience);
            g.expires_ms > now
                && need(&g.rights)
                && (scope.is_empty() || resource == scope || resource.starts_with(&format!("{scope}/")))
        })
    }
}

fn strip_scheme(s: &str) -> &str {
    s.split_once("://").map(|(_, r)| r).unwrap_or(s)
}

fn link_error(condition: ErrorCondition, description: &str) -> AmqpLinkError {
    AmqpLinkError::new(condition, Some(description.to_string()), None)
}

async fn serve_connection(stream: tokio::net::TcpStream, state: Arc<HubState>) {
    let acceptor = ConnectionAcceptor::builder()
        .container_id("eventhubs-standin")
        .sasl_acceptor(CbsSasl)
        .build();
    // fe2o3 writes to one end; `full_field_frames` carries its frames to the client.
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    tokio::spawn(full_field_frames(stream, theirs));
    let Ok(mut connection) = acceptor.accept(ours).await else {
        return;
    };
    let conn = Arc::new(Conn::default());
    // An explicit handle-max as Microsoft.Azure.Amqp sends (`AmqpSessionSettings.HandleMax`,
    // 256 Ki - 1); fe2o3 leaves the spec default (2^32 - 1) out of `begin`, and the Python SDK
    // then compares against the missing value.
    let session_acceptor = SessionAcceptor::builder().handle_max(256 * 1024 - 1u32).build();
    while let Some(incoming) = connection.next_incoming_session().await {
        let Ok(session) = session_acceptor
            .accept_incoming_session(incoming, &mut connection)
            .await
        else {
            continue; // one failed begin must not take the other sessions down
        };
        let (state, conn) = (state.clone(), conn.clone());
        tokio::spawn(async move { serve_session(session, state, conn).await });
    }
    let closed = connection.close().await;
    if std::env::var_os("STANDIN_DEBUG").is_some() {
        eprintln!("standin: connection ended: {closed:?}");
    }
}

async fn serve_session(mut session: ListenerSessionHandle, state: Arc<HubState>, conn: Arc<Conn>) {
    // Settlement as the service does it, whatever modes the client asks for. What it receives
    // (events, requests) it settles at once (`rcv-settle-mode` first): the Python SDK's producer
    // asks for `second` and waits for a settled disposition. What it sends (events, replies) goes
    // pre-settled (`snd-settle-mode` settled): the position is the client's, so the Python SDK's
    // consumer asks for `unsettled` yet never sends a disposition.
    let receiving = LinkAcceptor::builder()
        .max_message_size(1024 * 1024u64)
        .supported_receiver_settle_modes(SupportedReceiverSettleModes::First)
        .fallback_receiver_settle_mode(ReceiverSettleMode::First)
        .build();
    let sending = LinkAcceptor::builder()
        .max_message_size(1024 * 1024u64)
        .supported_sender_settle_modes(SupportedSenderSettleModes::Settled)
        .fallback_sender_settle_mode(SenderSettleMode::Settled)
        .supported_receiver_settle_modes(SupportedReceiverSettleModes::First)
        .fallback_receiver_settle_mode(ReceiverSettleMode::First)
        .build();
    while let Some(attach) = session.next_incoming_attach().await {
        let role = attach.role.clone();
        let source_address = attach
            .source
            .as_ref()
            .and_then(|s| s.address.clone())
            .unwrap_or_default();
        let target_address = attach
            .target
            .as_ref()
            .and_then(|t| match t.as_ref() {
                fe2o3_amqp::types::messaging::TargetArchetype::Target(t) => t.address.clone(),
                #[allow(unreachable_patterns)]
                _ => None,
            })
            .unwrap_or_default();
        let filter = attach.source.as_ref().and_then(|s| s.filter.as_ref()).and_then(|f| {
            f.iter().find_map(|(k, v)| {
                if k.as_str() != "apache.org:selector-filter:string" {
                    return None;
                }
                match v {
                    Value::Described(d) => match &d.value {
                        Value::String(s) => Some(s.clone()),
                        _ => None,
                    },
                    Value::String(s) => Some(s.clone()),
                    _ => None,
                }
            })
        });
        let epoch = attach.properties.as_ref().and_then(|p| {
            p.iter().find_map(|(k, v)| match (k.as_str(), v) {
                ("com.microsoft:epoch", Value::Long(e)) => Some(*e),
                ("com.microsoft:epoch", Value::Int(e)) => Some(*e as i64),
                _ => None,
            })
        });
        let link_acceptor = match role {
            Role::Sender => &receiving,
            Role::Receiver => &sending,
        };
        let link = match link_acceptor.accept_incoming_attach(attach, &mut session).await {
            Ok(l) => l,
            Err(_) => continue,
        };
        let (state, conn) = (state.clone(), conn.clone());
        match (role, link) {
            (Role::Sender, LinkEndpoint::Receiver(receiver)) => {
                let node = strip_node(&target_address, &state.namespace);
                tokio::spawn(async move {
                    match node.as_str() {
                        "$cbs" | "$management" => serve_requests(receiver, node, state, conn).await,
                        _ => serve_publisher(receiver, node, state, conn).await,
                    }
                });
            }
            (Role::Receiver, LinkEndpoint::Sender(sender)) => {
                let node = strip_node(&source_address, &state.namespace);
                if node == "$cbs" || node == "$management" {
                    let (tx, mut rx) = mpsc::channel::<Message<Body<Value>>>(64);
                    let keys = [target_address.clone(), format!("node:{node}")];
                    {
                        let mut replies = conn.replies.lock().unwrap();
                        for k in &keys {
                            replies.insert(k.clone(), tx.clone());
                        }
                    }
                    let conn = conn.clone();
                    tokio::spawn(async move {
                        let mut sender = sender;
                        let mut undelivered = None;
                        loop {
                            tokio::select! {
                                m = rx.recv() => match m {
                                    Some(m) => {
                                        let sendable = Sendable::builder().message(m.clone()).settled(true).build();
                                        if sender.send(sendable).await.is_err() {
                                            undelivered = Some(m);
                                            break;
                                        }
                                    }
                                    None => break,
                                },
                                _ = sender.on_detach() => break,
                            }
                        }
                        // Forget this link; a reply it could not carry goes to its successor.
                        {
                            let mut replies = conn.replies.lock().unwrap();
                            for k in &keys {
                                if replies.get(k).is_some_and(|t| t.same_channel(&tx)) {
                                    replies.remove(k);
                                }
                            }
                        }
                        rx.close();
                        while let Ok(m) = rx.try_recv() {
                            deliver_reply(&conn, &target_address, m).await;
                        }
                        if let Some(m) = undelivered {
                            deliver_reply(&conn, &target_address, m).await;
                        }
                        let _ = tokio::time::timeout(Duration::from_secs(2), sender.close()).await;
                    });
                } else {
                    tokio::spawn(async move { serve_reader(sender, node, filter, epoch, state, conn).await });
                }
            }
            _ => {}
        }
    }
}

/// `amqps://ns/hub/...` or `hub/...` → `hub/...`.
fn strip_node(address: &str, namespace: &str) -> String {
    let rest = strip_scheme(address);
    let rest = if address.contains("://") {
        rest.split_once('/').map(|(_, p)| p).unwrap_or("")
    } else {
        rest
    };
    let _ = namespace;
    rest.trim_matches('/').to_string()
}

fn app_string(props: &Option<ApplicationProperties>, key: &str) -> Option<String> {
    props.as_ref()?.0.iter().find_map(|(k, v)| match v {
        SimpleValue::String(s) if k == key => Some(s.clone()),
        SimpleValue::Symbol(s) if k == key => Some(s.as_str().to_string()),
        _ => None,
    })
}

async fn serve_requests(mut receiver: fe2o3_amqp::link::Receiver, node: String, state: Arc<HubState>, conn: Arc<Conn>) {
    loop {
        let delivery = match receiver.recv::<Body<Value>>().await {
            Ok(d) => d,
            Err(_) => break,
        };
        let _ = receiver.accept(&delivery).await;
        let message = delivery.into_message();
        let message_id = message.properties.as_ref().and_then(|p| p.message_id.clone());
        // Without `reply-to` (uamqp-c and the Python SDK's pyamqp send none; both links of the
        // pair are attached with the node as address) the service answers on the connection's
        // receiving link from that node.
        let reply_to = message
            .properties
            .as_ref()
            .and_then(|p| p.reply_to.clone())
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| format!("node:{node}"));
        let (status, description, body) = if node == "$cbs" {
            put_token(&message, &state, &conn)
        } else {
            management(&message, &state, &conn)
        };
        let app = ApplicationProperties::builder()
            .insert("status-code", SimpleValue::Int(status))
            .insert("status-description", SimpleValue::String(description))
            .insert("statusCode", SimpleValue::Int(status))
            .insert("statusDescription", SimpleValue::String(String::new()))
            .build();
        let reply = Message::builder()
            .properties(Properties {
                correlation_id: message_id,
                ..Default::default()
            })
            .application_properties(app)
            .body(body)
            .build();
        deliver_reply(&conn, &reply_to, reply).await;
    }
}

/// Send a reply on the link attached at `address` (it may attach just after the request).
async fn deliver_reply(conn: &Conn, address: &str, reply: Message<Body<Value>>) {
    for _ in 0..100 {
        let tx = conn.replies.lock().unwrap().get(address).cloned();
        if let Some(tx) = tx.filter(|t| !t.is_closed()) {
            if tx.send(reply.clone()).await.is_ok() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn put_token(message: &Message<Body<Value>>, state: &HubState, conn: &Conn) -> (i32, String, Body<Value>) {
    let kind = app_string(&message.application_properties, "type").unwrap_or_default();
    let name = app_string(&message.application_properties, "name").unwrap_or_default();
    let token = match &message.body {
        Body::Value(v) => match &v.0 {
            Value::String(s) => s.clone(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    // The service checks the entity of the audience first.
    let entity = strip_scheme(&name).split('/').nth(1).unwrap_or_default().to_string();
    if !entity.is_empty() && !entity.starts_with('$') && state.hub(&entity).is_none() {
        state.refused_tokens.fetch_add(1, Ordering::Relaxed);
        return (
            404,
            format!(
                "The messaging entity '{}/{entity}' could not be found.",
                state.namespace
            ),
            Body::Value(AmqpValue(Value::Null)),
        );
    }
    let grant = match kind.as_str() {
        "servicebus.windows.net:sastoken" => verify_sas(&token, state),
        "jwt" => {
            let entra = state.entra.lock().unwrap().clone();
            match entra {
                Some(e) if e.valid(&token, EVENTHUBS_SCOPE) => {
                    let ttl = e.expires_in.load(Ordering::Relaxed).max(1) as i64;
                    Ok(Grant {
                        // Entra tokens carry roles, not an entity scope: valid namespace-wide.
                        audience: strip_scheme(&name)
                            .split('/')
                            .next()
                            .unwrap_or_default()
                            .to_ascii_lowercase(),
                        rights: Rights::MANAGE,
                        expires_ms: now_ms() + ttl * 1000,
                    })
                }
                _ => Err("InvalidIssuer: token is not valid for this namespace".to_string()),
            }
        }
        other => Err(format!("unsupported token type {other:?}")),
    };
    match grant {
        Ok(g) => {
            conn.grants.lock().unwrap().push(g);
            (202, "Accepted".into(), Body::Value(AmqpValue(Value::Null)))
        }
        Err(e) => {
            state.refused_tokens.fetch_add(1, Ordering::Relaxed);
            (401, e, Body::Value(AmqpValue(Value::Null)))
        }
    }
}

fn url_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Check a `SharedAccessSignature` against the policies.
fn verify_sas(token: &str, state: &HubState) -> Result<Grant, String> {
    use base64::Engine;
    use hmac::Mac;
    let fields = token
        .strip_prefix("SharedAccessSignature ")
        .ok_or("not a SharedAccessSignature")?;
    let mut sr = None;
    let mut sig = None;
    let mut se = None;
    let mut skn = None;
    for part in fields.split('&') {
        match part.split_once('=') {
            Some(("sr", v)) => sr = Some(v),
            Some(("sig", v)) => sig = Some(v),
            Some(("se", v)) => se = Some(v),
            Some(("skn", v)) => skn = Some(v),
            _ => {}
        }
    }
    let (sr, sig, se, skn) = match (sr, sig, se, skn) {
        (Some(a), Some(b), Some(c), Some(d)) => (a, b, c, d),
        _ => return Err("malformed SharedAccessSignature".into()),
    };
    let (key, rights) = state
        .policies
        .lock()
        .unwrap()
        .get(&url_decode(skn))
        .cloned()
        .ok_or_else(|| format!("InvalidSignature: unknown policy {skn:?}"))?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).map_err(|e| e.to_string())?;
    mac.update(format!("{sr}\n{se}").as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    if expected != url_decode(sig) {
        return Err("InvalidSignature: the token has an invalid signature".into());
    }
    let expiry: i64 = se.parse().map_err(|_| "bad se")?;
    if expiry * 1000 <= now_ms() {
        return Err("ExpiredToken: the token is expired".into());
    }
    Ok(Grant {
        audience: strip_scheme(&url_decode(sr)).to_ascii_lowercase(),
        rights,
        expires_ms: expiry * 1000,
    })
}

fn management(message: &Message<Body<Value>>, state: &HubState, conn: &Conn) -> (i32, String, Body<Value>) {
    let props = &message.application_properties;
    let operation = app_string(props, "operation").unwrap_or_default();
    let kind = app_string(props, "type").unwrap_or_default();
    let name = app_string(props, "name").unwrap_or_default();
    let null = || Body::Value(AmqpValue(Value::Null));
    if operation != "READ" {
        return (400, format!("unsupported operation {operation:?}"), null());
    }
    let Some(hub) = state.hub(&name) else {
        return (
            404,
            format!("The messaging entity '{name}' could not be found."),
            null(),
        );
    };
    let resource = format!("{}/{}", state.namespace, hub.name);
    if !conn.allows(&resource, |_| true) {
        return (401, "Unauthorized: no valid token for the entity".into(), null());
    }
    let mut map: OrderedMap<Value, Value> = OrderedMap::new();
    map.insert(Value::String("name".into()), Value::String(hub.name.clone()));
    match kind.as_str() {
        "com.microsoft:eventhub" => {
            map.insert(Value::String("type".into()), Value::String(kind.clone()));
            map.insert(
                Value::String("created_at".into()),
                Value::Timestamp(Timestamp::from_milliseconds(hub.created_ms)),
            );
            map.insert(
                Value::String("partition_count".into()),
                Value::Int(hub.partitions.len() as i32),
            );
            map.insert(
                Value::String("partition_ids".into()),
                Value::Array(Array::from(
                    (0..hub.partitions.len())
                        .map(|p| Value::String(p.to_string()))
                        .collect::<Vec<_>>(),
                )),
            );
        }
        "com.microsoft:partition" => {
            let pid = app_string(props, "partition").unwrap_or_default();
            let Some(p) = pid.parse::<usize>().ok().and_then(|i| hub.partitions.get(i)) else {
                return (404, format!("partition {pid:?} not found"), null());
            };
            let log = p.log.read().unwrap();
            let last = log.last();
            map.insert(Value::String("type".into()), Value::String(kind.clone()));
            map.insert(Value::String("partition".into()), Value::String(pid.clone()));
            map.insert(Value::String("begin_sequence_number".into()), Value::Long(0));
            map.insert(
                Value::String("last_enqueued_sequence_number_epoch".into()),
                Value::Long(0),
            );
            map.insert(
                Value::String("last_enqueued_sequence_number".into()),
                Value::Long(last.map(|e| e.sequence_number).unwrap_or(-1)),
            );
            map.insert(
                Value::String("last_enqueued_offset".into()),
                Value::String(last.map(|e| e.offset.to_string()).unwrap_or_else(|| "-1".into())),
            );
            map.insert(
                Value::String("last_enqueued_time_utc".into()),
                Value::Timestamp(Timestamp::from_milliseconds(last.map(|e| e.enqueued_ms).unwrap_or(0))),
            );
            map.insert(Value::String("is_partition_empty".into()), Value::Bool(last.is_none()));
        }
        other => return (400, format!("unsupported type {other:?}"), null()),
    }
    (200, "OK".into(), Body::Value(AmqpValue(Value::Map(map))))
}

/// Parse `<hub>[/Partitions/<p>]`.
async fn serve_publisher(
    mut receiver: fe2o3_amqp::link::Receiver,
    node: String,
    state: Arc<HubState>,
    conn: Arc<Conn>,
) {
    let mut parts = node.split('/');
    let hub_name = parts.next().unwrap_or_default().to_string();
    let partition: Option<usize> = match (parts.next(), parts.next()) {
        (Some(p), Some(id)) if p.eq_ignore_ascii_case("Partitions") => id.parse().ok(),
        _ => None,
    };
    let Some(hub) = state.hub(&hub_name) else {
        let _ = receiver
            .close_with_error(link_error(
                AmqpError::NotFound.into(),
                &format!("The messaging entity '{hub_name}' could not be found."),
            ))
            .await;
        return;
    };
    let resource = format!("{}/{}", state.namespace, hub.name);
    if !conn.allows(&resource, |r| r.send) {
        let _ = receiver
            .close_with_error(link_error(
                AmqpError::UnauthorizedAccess.into(),
                "Unauthorized: Send claim required",
            ))
            .await;
        return;
    }
    loop {
        let delivery = match receiver.recv::<Body<Value>>().await {
            Ok(d) => d,
            Err(_) => break,
        };
        let format = *delivery.message_format();
        let _ = receiver.accept(&delivery).await;
        let message = delivery.into_message();
        let outer_key = partition_key(&message);
        let mut events = Vec::new();
        if format == Some(BATCH_FORMAT) {
            if let Body::Data(batch) = &message.body {
                for data in batch.iter() {
                    let inner: Result<
                        fe2o3_amqp::types::messaging::message::__private::Deserializable<Message<Body<Value>>>,
                        _,
                    > = serde_amqp::from_slice(data.0.as_ref());
                    if let Ok(m) = inner {
                        events.push(event_of(m.0));
                    }
                }
            }
        } else {
            events.push(event_of(message));
        }
        // A partition key picks the partition (the same key always the same one); without
        // one the service spreads sends round robin.
        let key = outer_key.or_else(|| events.iter().find_map(|e| e.1.clone()));
        let p = partition.unwrap_or_else(|| match &key {
            Some(k) => key_partition(k, hub.partitions.len()),
            None => hub.round_robin.fetch_add(1, Ordering::Relaxed) % hub.partitions.len(),
        });
        if let Some(part) = hub.partitions.get(p) {
            part.append(events);
        }
    }
}

/// The partition a key maps to: a stable hash (FNV-1a) of the key modulo the partition count.
/// The service's own hash differs; what clients rely on is that one key stays on one partition.
fn key_partition(key: &str, partitions: usize) -> usize {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % partitions.max(1) as u64) as usize
}

/// `x-opt-partition-key` of a message.
fn partition_key<B>(m: &Message<B>) -> Option<String> {
    m.message_annotations.as_ref().and_then(|a| {
        a.0.iter().find_map(|(k, v)| match (k, v) {
            (fe2o3_amqp::types::messaging::annotations::OwnedKey::Symbol(s), Value::String(p))
                if s.as_str() == "x-opt-partition-key" =>
            {
                Some(p.clone())
            }
            _ => None,
        })
    })
}

fn event_of(m: Message<Body<Value>>) -> NewEvent {
    let key = partition_key(&m);
    let body = match m.body {
        Body::Data(batch) => {
            let mut out = Vec::new();
            for d in batch.iter() {
                out.extend_from_slice(d.0.as_ref());
            }
            Bytes::from(out)
        }
        Body::Value(v) => match v.0 {
            Value::String(s) => Bytes::from(s),
            Value::Binary(b) => Bytes::from(b.into_vec()),
            _ => Bytes::new(),
        },
        _ => Bytes::new(),
    };
    (body, key, m.application_properties)
}

/// A receiver on `<hub>/ConsumerGroups/<cg>/Partitions/<p>`.
async fn serve_reader(
    mut sender: fe2o3_amqp::link::Sender,
    node: String,
    filter: Option<String>,
    epoch: Option<i64>,
    state: Arc<HubState>,
    conn: Arc<Conn>,
) {
    let parts: Vec<&str> = node.split('/').collect();
    let refuse = |condition: ErrorCondition, text: String| link_error(condition, &text);
    let (hub_name, group, pid) = match parts.as_slice() {
        [hub, cg, group, ps, pid]
            if cg.eq_ignore_ascii_case("ConsumerGroups") && ps.eq_ignore_ascii_case("Partitions") =>
        {
            (hub.to_string(), group.to_string(), pid.to_string())
        }
        _ => {
            let _ = sender
                .close_with_error(refuse(AmqpError::NotFound.into(), format!("no such entity {node:?}")))
                .await;
            return;
        }
    };
    let Some(hub) = state.hub(&hub_name) else {
        let _ = sender
            .close_with_error(refuse(
                AmqpError::NotFound.into(),
                format!(
                    "The messaging entity '{}/{hub_name}' could not be found.",
                    state.namespace
                ),
            ))
            .await;
        return;
    };
    if !hub.groups.contains(&group.to_ascii_lowercase()) {
        let _ = sender
            .close_with_error(refuse(
                AmqpError::NotFound.into(),
                format!("The messaging entity '{hub_name}/ConsumerGroups/{group}' could not be found."),
            ))
            .await;
        return;
    }
    let Some((index, partition)) = pid
        .parse::<usize>()
        .ok()
        .and_then(|i| hub.partitions.get(i).map(|p| (i, p.clone())))
    else {
        let _ = sender
            .close_with_error(refuse(
                AmqpError::NotFound.into(),
                format!("partition {pid:?} not found"),
            ))
            .await;
        return;
    };
    // The entity the link reads: a token scoped to the hub or to `<hub>/ConsumerGroups/<cg>`
    // (the Python SDK signs for the consumer group) covers it.
    let resource = format!(
        "{}/{}/ConsumerGroups/{group}/Partitions/{pid}",
        state.namespace, hub.name
    );
    if !conn.allows(&resource, |r| r.listen) {
        let _ = sender
            .close_with_error(refuse(
                AmqpError::UnauthorizedAccess.into(),
                "Unauthorized access. 'Listen' claim(s) are required to perform this operation.".into(),
            ))
            .await;
        return;
    }
    let mut cursor = match partition.start_index(filter.as_deref()) {
        Ok(i) => i,
        Err(e) => {
            let _ = sender
                .close_with_error(refuse(
                    ErrorCondition::Custom(Symbol::from("com.microsoft:argument-out-of-range")),
                    e,
                ))
                .await;
            return;
        }
    };

    // Register, applying the epoch rules.
    let key = (hub_name.to_ascii_lowercase(), group.to_ascii_lowercase(), index);
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let (stop_tx, mut stop_rx) = oneshot::channel::<AmqpLinkError>();
    let (stopped_tx, stopped_rx) = watch::channel(false);
    let mut wait_for = Vec::new();
    let refused = {
        let mut readers = state.readers.lock().unwrap();
        let list = readers.entry(key.clone()).or_default();
        let max_epoch = list.iter().filter_map(|r| r.epoch).max();
        let refused = match (epoch, max_epoch) {
            (Some(e), Some(m)) if e < m => Some(refuse(
                LinkError::Stolen.into(),
                format!("Receiver with epoch {e} refused: a receiver with the higher epoch {m} exists."),
            )),
            (None, Some(m)) => Some(refuse(
                LinkError::Stolen.into(),
                format!("A receiver with epoch {m} exists; non-epoch receivers are refused."),
            )),
            (None, None) if list.len() >= MAX_NON_EPOCH_READERS => Some(refuse(
                AmqpError::ResourceLimitExceeded.into(),
                format!(
                    "Exceeded the maximum number of allowed receivers per partition in a consumer group which is {MAX_NON_EPOCH_READERS}."
                ),
            )),
            _ => None,
        };
        if refused.is_none() {
            if let Some(e) = epoch {
                for r in list.iter_mut() {
                    if let Some(tx) = r.stop.take() {
                        state.steals.fetch_add(1, Ordering::Relaxed);
                        let _ = tx.send(refuse(
                            LinkError::Stolen.into(),
                            format!("New receiver with epoch {e} was created; this receiver was disconnected."),
                        ));
                    }
                    wait_for.push(r.stopped.clone());
                }
            }
            list.push(Reader {
                id,
                epoch,
                stop: Some(stop_tx),
                stopped: stopped_rx,
            });
        }
        refused
    };
    if let Some(err) = refused {
        let _ = sender.close_with_error(err).await;
        return;
    }
    state.reader_attaches.fetch_add(1, Ordering::Relaxed);
    // A stolen reader stops before the new one sends.
    for mut w in wait_for {
        let _ = tokio::time::timeout(Duration::from_secs(5), w.wait_for(|s| *s)).await;
    }
    let mut grown = partition.grown.subscribe();
    if partition.sending.fetch_add(1, Ordering::SeqCst) > 0 {
        partition.overlaps.fetch_add(1, Ordering::Relaxed);
    }
    let mut last_auth_check = std::time::Instant::now();
    let end: Option<AmqpLinkError> = 'outer: loop {
        if last_auth_check.elapsed() > Duration::from_millis(500) {
            last_auth_check = std::time::Instant::now();
            if !conn.allows(&resource, |r| r.listen) {
                break Some(refuse(
                    AmqpError::UnauthorizedAccess.into(),
                    "The token has expired.".into(),
                ));
            }
        }
        let chunk: Vec<StoredEvent> = {
            let log = partition.log.read().unwrap();
            log[cursor.min(log.len())..(cursor + 64).min(log.len())].to_vec()
        };
        if chunk.is_empty() {
            tokio::select! {
                e = &mut stop_rx => break Some(e.unwrap_or_else(|_| refuse(LinkError::DetachForced.into(), "reader stopped".into()))),
                _ = grown.changed() => {}
                _ = sender.on_detach() => break None,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            continue;
        }
        for event in chunk {
            let message = message_of(&event, index);
            tokio::select! {
                biased;
                e = &mut stop_rx => break 'outer Some(e.unwrap_or_else(|_| refuse(LinkError::DetachForced.into(), "reader stopped".into()))),
                r = sender.send(Sendable::builder().message(message).settled(true).build()) => {
                    if r.is_err() {
                        break 'outer None;
                    }
                }
            }
            cursor += 1;
            state.delivered.fetch_add(1, Ordering::Relaxed);
        }
    };
    partition.sending.fetch_sub(1, Ordering::SeqCst);
    {
        let mut readers = state.readers.lock().unwrap();
        if let Some(list) = readers.get_mut(&key) {
            list.retain(|r| r.id != id);
        }
    }
    let _ = stopped_tx.send(true);
    match end {
        Some(err) => {
            let _ = tokio::time::timeout(Duration::from_secs(5), sender.close_with_error(err)).await;
        }
        None => {
            let _ = tokio::time::timeout(Duration::from_secs(5), sender.close()).await;
        }
    }
}

fn message_of(event: &StoredEvent, partition: usize) -> Message<Data> {
    let mut annotations = MessageAnnotations::builder()
        .insert(
            Symbol::from("x-opt-sequence-number"),
            Value::Long(event.sequence_number),
        )
        .insert(Symbol::from("x-opt-offset"), Value::String(event.offset.to_string()))
        .insert(
            Symbol::from("x-opt-enqueued-time"),
            Value::Timestamp(Timestamp::from_milliseconds(event.enqueued_ms)),
        );
    if let Some(k) = &event.partition_key {
        annotations = annotations.insert(Symbol::from("x-opt-partition-key"), Value::String(k.clone()));
    }
    let _ = partition;
    let mut builder = Message::builder().message_annotations(annotations.build());
    if let Some(p) = &event.properties {
        builder = builder.application_properties(p.clone());
    }
    builder.data(Binary::from(event.body.to_vec())).build()
}

/// Pump between the client's socket and fe2o3: client bytes go through unchanged, every frame
/// fe2o3 writes goes out with its described lists in full length.
///
/// AMQP 1.0 lets an encoder drop trailing null fields of a described list and fe2o3 does; the
/// service does not: Microsoft.Azure.Amqp (the broker library behind Event Hubs) writes every
/// field of every performative, source, target, error and outcome (`DescribedList.EncodeValue`
/// writes `FieldCount` entries). Clients rely on that: the Python SDK's pure-Python AMQP stack
/// reads `open` field 9 and `close` error field 2 by position and assumes a list8/list32 body.
async fn full_field_frames(client: tokio::net::TcpStream, server: tokio::io::DuplexStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
    let (mut client_read, client_write) = client.into_split();
    let (server_read, mut server_write) = tokio::io::split(server);
    let upstream = async move {
        // Frames up to the client's `open`, which is passed on with a smaller max-frame-size
        // (see `shrink_max_frame_size`); everything after it unchanged.
        let mut from = BufReader::new(&mut client_read);
        loop {
            let mut head = [0u8; 8];
            if from.read_exact(&mut head).await.is_err() {
                return;
            }
            let frame = if &head[..4] == b"AMQP" {
                head.to_vec()
            } else {
                let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
                let mut frame = head.to_vec();
                frame.resize(size.max(8), 0);
                if from.read_exact(&mut frame[8..]).await.is_err() {
                    return;
                }
                frame
            };
            let (frame, open) = shrink_max_frame_size(frame);
            if server_write.write_all(&frame).await.is_err() {
                return;
            }
            if open {
                break;
            }
        }
        let buffered = from.buffer().to_vec();
        drop(from);
        if server_write.write_all(&buffered).await.is_ok() {
            let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        }
        let _ = server_write.shutdown().await;
    };
    let downstream = async move {
        let mut from = BufReader::new(server_read);
        let mut to = BufWriter::new(client_write);
        loop {
            if from.buffer().is_empty() && to.flush().await.is_err() {
                break;
            }
            let mut head = [0u8; 8];
            if from.read_exact(&mut head).await.is_err() {
                break;
            }
            if &head[..4] == b"AMQP" {
                // Protocol header (SASL or AMQP).
                if to.write_all(&head).await.is_err() {
                    break;
                }
                continue;
            }
            let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
            let mut frame = head.to_vec();
            frame.resize(size.max(8), 0);
            if from.read_exact(&mut frame[8..]).await.is_err() {
                break;
            }
            let frame = pad_frame(frame);
            if to.write_all(&frame).await.is_err() {
                break;
            }
        }
        let _ = to.flush().await;
        let _ = to.into_inner().shutdown().await;
    };
    tokio::join!(upstream, downstream);
}

/// What padding can add to a frame: up to ten null fields of a `transfer` and a list8 header
/// grown to list32, with room to spare.
const PADDING_ROOM: u32 = 256;

/// The client's `open` frame with its max-frame-size lowered by [`PADDING_ROOM`], and whether
/// the frame was that `open` (other frames come back unchanged).
///
/// fe2o3 fills the frames of a large message up to the client's max-frame-size; padding those
/// `transfer` frames would then exceed the limit and the client would close the connection
/// (the broker writes full field lists and stays within the limit). Told a limit smaller by
/// the padding's room, fe2o3's frames still fit after padding.
fn shrink_max_frame_size(frame: Vec<u8>) -> (Vec<u8>, bool) {
    let body_at = frame.get(4).map_or(0, |d| *d as usize * 4);
    if frame.len() < 8 || frame[5] != 0 || body_at < 8 || frame.get(body_at..body_at + 3) != Some(&[0x00, 0x53, 0x10]) {
        return (frame, false);
    }
    let list = body_at + 3;
    let (count, first) = match frame.get(list) {
        Some(0xc0) => (frame.get(list + 2).copied().unwrap_or(0) as usize, list + 3),
        Some(0xd0) => match frame.get(list + 5..list + 9) {
            Some(b) => (u32::from_be_bytes(b.try_into().unwrap()) as usize, list + 9),
            None => return (frame, true),
        },
        _ => return (frame, true),
    };
    // Fields: container-id, hostname, max-frame-size, ...
    let mut at = first;
    let mut fields = Vec::with_capacity(count);
    for _ in 0..count {
        let Some(len) = encoded_len(&frame, at) else {
            return (frame, true);
        };
        fields.push(frame[at..at + len].to_vec());
        at += len;
    }
    let max = match fields.get(2).map(Vec::as_slice) {
        Some([0x70, a, b, c, d]) => u32::from_be_bytes([*a, *b, *c, *d]),
        Some([0x52, v]) => *v as u32,
        // Absent or null: no limit, nothing to keep room in.
        _ => return (frame, true),
    };
    let lowered = max.saturating_sub(PADDING_ROOM).max(512);
    fields[2] = [&[0x70][..], &lowered.to_be_bytes()].concat();
    let items: Vec<u8> = fields.concat();
    let mut out = frame[..list].to_vec();
    out.push(0xd0);
    out.extend_from_slice(&(items.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(&(count as u32).to_be_bytes());
    out.extend_from_slice(&items);
    out.extend_from_slice(&frame[at..]);
    let size = out.len() as u32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    (out, true)
}

/// A frame with its performative's described lists padded to full length (unchanged if it
/// cannot be parsed; empty frames stay empty).
fn pad_frame(frame: Vec<u8>) -> Vec<u8> {
    let body_at = frame[4] as usize * 4;
    if body_at < 8 || body_at >= frame.len() || frame[5] > 1 {
        return frame;
    }
    let mut out = frame[..body_at].to_vec();
    match pad_value(&frame, body_at, &mut out) {
        Some(end) => {
            out.extend_from_slice(&frame[end..]);
            let size = out.len() as u32;
            out[..4].copy_from_slice(&size.to_be_bytes());
            out
        }
        None => frame,
    }
}

/// Number of fields of the described lists a broker sends, by descriptor code (AMQP 1.0).
fn full_field_count(code: u64) -> Option<usize> {
    Some(match code {
        0x10 => 10, // open
        0x11 => 8,  // begin
        0x12 => 14, // attach
        0x13 => 11, // flow
        0x14 => 11, // transfer
        0x15 => 6,  // disposition
        0x16 => 3,  // detach
        0x17 => 1,  // end
        0x18 => 1,  // close
        0x1d => 3,  // error
        0x23 => 2,  // received
        0x24 => 0,  // accepted
        0x25 => 1,  // rejected
        0x26 => 0,  // released
        0x27 => 3,  // modified
        0x28 => 11, // source
        0x29 => 7,  // target
        0x40 => 1,  // sasl-mechanisms
        0x42 => 1,  // sasl-challenge
        0x44 => 2,  // sasl-outcome
        _ => return None,
    })
}

/// Length of the encoded value at `at` (constructor included).
fn encoded_len(buf: &[u8], at: usize) -> Option<usize> {
    let code = *buf.get(at)?;
    let width = |n: usize| -> Option<usize> {
        let bytes = buf.get(at + 1..at + 1 + n)?;
        Some(bytes.iter().fold(0usize, |acc, b| acc << 8 | *b as usize))
    };
    let len = match code {
        0x00 => {
            let descriptor = encoded_len(buf, at + 1)?;
            1 + descriptor + encoded_len(buf, at + 1 + descriptor)?
        }
        _ => match code >> 4 {
            0x4 => 1,
            0x5 => 2,
            0x6 => 3,
            0x7 => 5,
            0x8 => 9,
            0x9 => 17,
            0xa | 0xc | 0xe => 2 + width(1)?,
            0xb | 0xd | 0xf => 5 + width(4)?,
            _ => return None,
        },
    };
    (at + len <= buf.len()).then_some(len)
}

/// Copy the value at `at` to `out`, writing described lists of known types in full length;
/// returns where the value ends.
fn pad_value(buf: &[u8], at: usize, out: &mut Vec<u8>) -> Option<usize> {
    let end = at + encoded_len(buf, at)?;
    let copy = |out: &mut Vec<u8>| {
        out.extend_from_slice(&buf[at..end]);
        Some(end)
    };
    if buf[at] != 0x00 {
        return copy(out);
    }
    let (code, descriptor_len) = match buf.get(at + 1)? {
        0x53 => (*buf.get(at + 2)? as u64, 2),
        0x44 => (0, 1),
        0x80 => (u64::from_be_bytes(buf.get(at + 2..at + 10)?.try_into().ok()?), 9),
        _ => return copy(out),
    };
    let Some(fields) = full_field_count(code) else {
        return copy(out);
    };
    let list = at + 1 + descriptor_len;
    let (count, mut item) = match buf[list] {
        0x45 => (0, list + 1),
        0xc0 => (*buf.get(list + 2)? as usize, list + 3),
        0xd0 => (
            u32::from_be_bytes(buf.get(list + 5..list + 9)?.try_into().ok()?) as usize,
            list + 9,
        ),
        _ => return copy(out),
    };
    let mut items = Vec::new();
    for _ in 0..count {
        item = pad_value(buf, item, &mut items)?;
    }
    if item != end {
        return None;
    }
    let total = count.max(fields);
    items.resize(items.len() + (total - count), 0x40);
    out.extend_from_slice(&buf[at..list]);
    if total == 0 {
        out.push(0x45);
    } else if items.len() < 255 && total < 256 {
        out.extend_from_slice(&[0xc0, items.len() as u8 + 1, total as u8]);
    } else {
        out.push(0xd0);
        out.extend_from_slice(&(items.len() as u32 + 4).to_be_bytes());
        out.extend_from_slice(&(total as u32).to_be_bytes());
    }
    out.extend_from_slice(&items);
    Some(end)
}
