//! The operator: kube-runtime controllers for LogSource, ConsumerGroup and SiemDestination.
//!
//! Each controller has its own file (`log_source`, `consumer_group`, `destination`); child
//! objects come from the pure builders in `builders`, are applied by `children`, and conditions
//! are computed in `status`. Watched kinds feed shared reflector stores (`context::Stores`) that
//! every controller reads instead of listing the API.
//!
//! # Watches and API traffic
//!
//! One watch per kind (per watched namespace), shared by the three controllers through
//! kube-runtime shared streams (`reflector::store_shared`, `Controller::for_shared_stream`):
//! LogSources, ConsumerGroups, SiemDestinations, Secrets **as metadata only** (the operator never
//! receives a Secret value; the `resourceVersion` is what the rollout hash needs, and whether a
//! key exists is the collector's check), and the operator's own ConfigMaps and Deployments (by
//! label). A controller is triggered by what it reads of another object (its spec, its `Ready`
//! condition, a Secret's `resourceVersion`), not by every status write. A reconcile of an
//! unchanged resource compares the children's hash (annotation of the collector Deployment)
//! in memory and makes no API request; a status is patched only when it changed. So at rest
//! the operator reads nothing but its watches and writes nothing (leader Lease renewals
//! apart); `siembridge_operator_api_requests_total{verb,resource}` counts every request.
//! Deletions are not fanned out on shared streams: what depends on a deleted object catches up
//! at its next requeue (30 s to 5 min).
//!
//! Finalizers: none. Every child lives in Kubernetes and carries a controller owner reference,
//! so garbage collection removes it with its owner; nothing outside the cluster needs cleaning.
//!
//! # RBAC the operator needs (the Helm chart's ClusterRole is written from this list)
//!
//! | apiGroups | resources | verbs |
//! |---|---|---|
//! | `siembridge.io` | `logsources`, `consumergroups`, `siemdestinations`, `notifiers` | get, list, watch |
//! | `siembridge.io` | `logsources/status`, `consumergroups/status`, `siemdestinations/status`, `notifiers/status` | get, patch, update |
//! | `""` | `configmaps`, `serviceaccounts` | get, list, watch, create, patch, update, delete |
//! | `apps` | `deployments` | get, list, watch, create, patch, update, delete |
//! | `rbac.authorization.k8s.io` | `roles`, `rolebindings` | get, list, watch, create, patch, update, delete |
//! | `""` | `secrets` | get, list, watch (list/watch used as metadata only; get held, never used: see below) |
//! | `coordination.k8s.io` | `leases` | get, list, watch, create, update, patch (leader election, and granted on to collector Roles) |
//! | `events.k8s.io` | `events` | create, patch |
//!
//! Because the operator writes Roles, it must itself hold every permission those Roles grant
//! (RBAC escalation prevention): `leases` create/get/list/watch/update/patch, `configmaps`
//! get/create/patch/update, `secrets` get. All of these are in the table above. That is the only
//! reason it holds `get` on Secrets: it never requests a Secret body (`tests/cluster_impersonation.rs`),
//! except the Secrets a `Notifier` names (webhook URLs, SMTP credentials, a CA), which the
//! Notifier controller reads when it sends (`notifier`).
//! The chart gives these rules as a ClusterRole when every namespace is watched, and as a Role in
//! each namespace of `watchNamespaces` otherwise.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, Store};

use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::api::{CollectorPodTemplate, ConsumerGroup, LogSource, SiemDestination};

pub mod api_requests;
pub mod builders;
pub mod children;
pub mod connectivity;
pub mod consumer_group;
pub mod context;
pub mod destination;
pub mod error;
pub mod leader;
pub mod log_source;
pub mod metrics;
pub mod notifier;
pub mod status;
pub mod triggers;

use connectivity::{ConnectivityCheck, TcpConnect};
use context::{Context, Stores};
use metrics::Metrics;

/// Options of `siembridge operator`.
#[derive(Clone, Debug, clap::Args)]
pub struct OperatorArgs {
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, default_value = "0.0.0.0:8080", env = "SIEMBRIDGE_METRICS_ADDR")]
    pub metrics_addr: SocketAddr,
    /// Image of the collector pods.
    #[arg(long, env = "SIEMBRIDGE_COLLECTOR_IMAGE", default_value_t = default_collector_image())]
    pub collector_image: String,
    /// Namespace of the leader-election Lease; the operator pod's namespace (downward API),
    /// else the kubeconfig's namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    pub leader_namespace: Option<String>,
    /// Holder identity in the leader Lease; the pod name, else the host name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Watch only these namespaces (comma-separated; each needs only a namespaced Role there);
    /// every namespace when unset or empty.
    #[arg(long, env = "SIEMBRIDGE_WATCH_NAMESPACES", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,
    /// Defaults of every collector pod, as JSON in the shape of a resource's `podTemplate`
    /// (the chart's `collectorPod` value): labels, annotations, imagePullSecrets, nodeSelector,
    /// tolerations, affinity, topologySpreadConstraints, priorityClassName, env, resources,
    /// serviceAccountAnnotations.
    #[arg(long, env = "SIEMBRIDGE_COLLECTOR_POD_DEFAULTS")]
    pub collector_pod_defaults: Option<String>,
}

/// The collector pod defaults of `--collector-pod-defaults`, checked at start-up.
pub fn collector_pod_defaults(json: Option<&str>) -> anyhow::Result<CollectorPodTemplate> {
    match json.map(str::trim).filter(|j| !j.is_empty()) {
        None => Ok(CollectorPodTemplate::default()),
        Some(j) => serde_json::from_str(j).context(
            "SIEMBRIDGE_COLLECTOR_POD_DEFAULTS (--collector-pod-defaults) is not a valid collector pod template",
        ),
    }
}

/// `ghcr.io/siembridge/siembridge:<crate version>`.
pub fn default_collector_image() -> String {
    format!("ghcr.io/siembridge/siembridge:{}", env!("CARGO_PKG_VERSION"))
}

/// What the controllers need besides the client.
#[derive(Clone)]
pub struct ControllerSettings {
    /// Image of collector pods.
    pub collector_image: String,
    /// Connectivity check of destinations.
    pub connectivity: Arc<dyn ConnectivityCheck>,
    /// Reporting instance of Events.
    pub instance: Option<String>,
    /// Only these namespaces are watched (the chart's `watchNamespaces`, with a Role in each);
    /// every namespace when empty.
    pub watch_namespaces: Vec<String>,
    /// Defaults of every collector pod.
    pub collector_pod_defaults: CollectorPodTemplate,
}

/// An Api over the watched namespace, or over all namespaces.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Run the operator until SIGTERM or Ctrl-C.
pub async fn run(args: OperatorArgs) -> anyhow::Result<()> {
    let registry = crate::telemetry::process_registry("operator").context("cannot register metrics")?;
    let metrics = Metrics::new(&registry).context("cannot register metrics")?;
    let requests = api_requests::ApiRequests::new(&registry).context("cannot register metrics")?;
    let client = connect(&requests).await?;
    let health = crate::telemetry::Health::new();

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let server = {
        let shutdown = shutdown.clone();
        let (registry, health) = (registry.clone(), health.clone());
        tokio::spawn(async move {
            crate::telemetry::serve(args.metrics_addr, registry, health, shutdown.cancelled_owned()).await
        })
    };

    let watch_namespaces: Vec<String> = args
        .watch_namespaces
        .iter()
        .map(|ns| ns.trim().to_string())
        .filter(|ns| !ns.is_empty())
        .collect();
    crds_installed(&client, watch_namespaces.first().map(String::as_str)).await?;
    let namespace = args
        .leader_namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let identity = args.identity.clone().unwrap_or_else(host_name);
    let elector = leader::LeaderElector::new(client.clone(), &namespace, identity.clone());
    // A standby replica is healthy and ready: it takes over within a lease duration.
    health.set_ready(true);
    tracing::info!(
        identity,
        namespace,
        lease = leader::LEASE_NAME,
        "waiting for leadership"
    );
    if !elector.acquire(&shutdown).await {
        return finish_server(server).await;
    }
    tracing::info!(identity, "leading; starting controllers");

    let stop = shutdown.child_token();
    let term = {
        let (elector, stop) = (elector.clone(), stop.clone());
        tokio::spawn(async move {
            let end = elector.hold(&stop).await;
            stop.cancel();
            end
        })
    };
    let settings = ControllerSettings {
        collector_image: args.collector_image.clone(),
        connectivity: Arc::new(TcpConnect::default()),
        instance: Some(identity),
        watch_namespaces,
        collector_pod_defaults: collector_pod_defaults(args.collector_pod_defaults.as_deref())?,
    };
    let controllers = run_controllers(client, metrics, settings, stop.clone()).await;
    stop.cancel();
    let end = term.await.unwrap_or(leader::TermEnd::Released);
    shutdown.cancel();
    finish_server(server).await?;
    controllers?;
    match end {
        leader::TermEnd::Released => Ok(()),
        leader::TermEnd::Lost(why) => anyhow::bail!("lost leadership ({why}); exiting so that a new leader takes over"),
    }
}

async fn finish_server(server: tokio::task::JoinHandle<std::io::Result<()>>) -> anyhow::Result<()> {
    match server.await {
        Ok(result) => result.context("metrics server failed"),
        Err(e) => Err(anyhow::anyhow!("metrics server task failed: {e}")),
    }
}

/// A client that has answered once, or one line saying why the API server cannot be reached.
/// Its requests are counted in `requests`.
async fn connect(requests: &api_requests::ApiRequests) -> anyhow::Result<Client> {
    install_crypto_provider();
    let config = kube::Config::infer()
        .await
        .context("cannot find Kubernetes API server credentials (no in-cluster config, no usable kubeconfig)")?;
    let url = config.cluster_url.to_string();
    let client = requests
        .client(config)
        .with_context(|| format!("cannot create a client for the Kubernetes API server {url}"))?;
    // The client logs a failed request itself; this probe's failure is reported below as one
    // line, so its own log is silenced.
    let probe = tracing::instrument::WithSubscriber::with_subscriber(
        client.apiserver_version(),
        tracing::subscriber::NoSubscriber::default(),
    );
    match tokio::time::timeout(Duration::from_secs(10), probe).await {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(e)) => Err(anyhow::anyhow!(
            "cannot reach the Kubernetes API server {url}: {}",
            one_line(&e)
        )),
        Err(_) => Err(anyhow::anyhow!(
            "cannot reach the Kubernetes API server {url}: no answer within 10s"
        )),
    }
}

/// One line saying the CRDs are missing, rather than watches failing forever.
async fn crds_installed(client: &Client, namespace: Option<&str>) -> anyhow::Result<()> {
    let api = scoped::<LogSource>(client, namespace);
    match api.list_metadata(&kube::api::ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            anyhow::bail!("the siembridge.io CRDs are not installed (apply crds/ or the Helm chart)")
        }
        Err(e) => Err(anyhow::anyhow!("cannot list LogSources: {}", one_line(&e))),
    }
}

pub use crate::tls::install_crypto_provider;

/// An error and its sources on one line.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out.replace('\n', " ")
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "siembridge-operator".into())
}

async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the operator");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
    token.cancel();
}

/// Label selector of every object the operator makes.
fn managed_selector() -> String {
    format!("{}={}", builders::MANAGED_BY_LABEL, builders::MANAGED_BY)
}

/// Capacity of the fan-out of one shared watch to its subscribers (object references); when it
/// is full the watch waits for the slowest controller.
const SHARED_BUFFER: usize = 1024;

/// Drop what no controller reads from a cached object: `managedFields` and the
/// `last-applied-configuration` copy of the whole object kubectl keeps.
fn trim<K: kube::Resource>(obj: &mut K) {
    use kube::ResourceExt;
    obj.managed_fields_mut().clear();
    obj.annotations_mut()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
}

/// One watch of a kind feeding one store, shared by every controller through `handle` (cloned
/// once per subscriber); `run` drives the watch until dropped.
struct Shared<K: kube::Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    handle: reflector::ReflectHandle<K>,
    /// Objects deleted, as the watch saw them: kube's shared streams carry only applied
    /// objects, so without this a deleted SiemDestination, ConsumerGroup or Secret would reach
    /// the resources that name it only at their next periodic reconcile (minutes).
    deleted: tokio::sync::broadcast::Sender<Arc<K>>,
    run: futures::future::BoxFuture<'static, ()>,
}

/// References to reconcile when an object of `shared` is deleted from now on, from `map`
/// (the same mapper as for its changes). A subscriber that falls behind skips what it missed;
/// the periodic reconcile covers that.
fn on_delete<K, M, F>(
    shared: &tokio::sync::broadcast::Sender<Arc<K>>,
    map: F,
) -> impl futures::Stream<Item = reflector::ObjectRef<M>> + Send + 'static
where
    K: Send + Sync + 'static,
    M: kube::Resource<DynamicType = ()> + Send + 'static,
    F: Fn(&K) -> Vec<reflector::ObjectRef<M>> + Send + 'static,
{
    use tokio::sync::broadcast::error::RecvError;
    futures::stream::unfold(shared.subscribe(), |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(obj) => return Some((obj, rx)),
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    })
    .flat_map(move |obj| futures::stream::iter(map(&obj)))
}

fn shared<K, S>(events: S) -> Shared<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let (store, writer) = reflector::store_shared(SHARED_BUFFER);
    let handle = writer
        .subscribe()
        .unwrap_or_else(|| unreachable!("a shared store has a dispatcher"));
    let (deleted, _) = tokio::sync::broadcast::channel(SHARED_BUFFER);
    let tell = deleted.clone();
    let run = events
        .default_backoff()
        .modify(trim::<K>)
        .inspect(move |event| {
            if let Ok(watcher::Event::Delete(obj)) = event {
                // No subscriber (yet) is fine.
                let _ = tell.send(Arc::new(obj.clone()));
            }
        })
        .reflect_shared(writer)
        .for_each(|event| async move {
            if let Err(error) = event {
                tracing::warn!(%error, "watch failed; retrying");
            }
        })
        .boxed();
    Shared {
        store,
        handle,
        deleted,
        run,
    }
}

/// `events` without the ones whose `fingerprint` did not change since the last event of the
/// same object: a controller is triggered by what it reads of another object, not by every
/// status write (1,000 LogSources naming one SiemDestination would otherwise each be reconciled
/// on every change of its `usedBy`).
fn on_change<K, F>(
    events: impl futures::Stream<Item = Arc<K>> + Send + 'static,
    fingerprint: F,
) -> impl futures::Stream<Item = Arc<K>> + Send + 'static
where
    K: kube::Resource<DynamicType = ()> + Send + Sync + 'static,
    F: Fn(&K) -> u64 + Send + 'static,
{
    let mut seen: std::collections::HashMap<reflector::ObjectRef<K>, u64> = Default::default();
    events.filter(move |obj| {
        let print = fingerprint(obj.as_ref());
        let changed = seen.insert(reflector::ObjectRef::from_obj(obj.as_ref()), print) != Some(print);
        futures::future::ready(changed)
    })
}

fn hash_of(value: impl std::hash::Hash) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(value)
}

/// What another object reads of a resource: its spec (`generation`) and its `Ready` condition.
fn spec_and_ready<K: kube::Resource>(
    obj: &K,
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> u64 {
    let ready = crate::api::conditions::find(conditions, crate::api::conditions::types::READY)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()));
    hash_of((obj.meta().generation, ready))
}

fn generation<K: kube::Resource>(obj: &K) -> u64 {
    hash_of(obj.meta().generation)
}

fn destination_print(d: &SiemDestination) -> u64 {
    spec_and_ready(d, d.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or(&[]))
}

fn consumer_group_print(cg: &ConsumerGroup) -> u64 {
    spec_and_ready(cg, cg.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or(&[]))
}

/// What a Notifier reads of a LogSource: its labels and its conditions' states.
fn notifier_print(ls: &LogSource) -> u64 {
    let states: Vec<(&str, &str, String)> = ls
        .status
        .iter()
        .flat_map(|s| s.conditions.iter())
        .map(|c| {
            (
                c.type_.as_str(),
                c.status.as_str(),
                c.last_transition_time.0.to_string(),
            )
        })
        .collect();
    hash_of((ls.metadata.labels.as_ref(), states))
}

fn secret_print(secret: &context::SecretMeta) -> u64 {
    hash_of(&secret.metadata.resource_version)
}

/// Run the three controllers until `stop` fires: over every namespace when
/// `settings.watch_namespaces` is empty, else over each listed namespace (one set of watches per
/// namespace, which is what a Role per namespace allows). Used by `run` once leader, and
/// in-process by the cluster tests.
pub async fn run_controllers(
    client: Client,
    metrics: Metrics,
    settings: ControllerSettings,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    if settings.watch_namespaces.is_empty() {
        return run_controllers_in(client, metrics, settings, None, stop).await;
    }
    let mut namespaces = settings.watch_namespaces.clone();
    namespaces.sort();
    namespaces.dedup();
    let runs = namespaces.into_iter().map(|ns| {
        let (client, metrics, settings, stop) = (client.clone(), metrics.clone(), settings.clone(), stop.clone());
        async move {
            run_controllers_in(client, metrics, settings, Some(ns.clone()), stop)
                .await
                .with_context(|| format!("controllers of namespace {ns}"))
        }
    });
    futures::future::try_join_all(runs).await.map(|_| ())
}

/// The controllers of one namespace, or of all (`None`). One watch per kind, shared by the
/// three controllers and the stores they read: LogSources, ConsumerGroups and SiemDestinations
/// as full objects; Secrets as metadata only (the operator never receives a Secret value; the
/// `resourceVersion` is all the rollout hash needs); the operator's own ConfigMaps and
/// Deployments by label.
async fn run_controllers_in(
    client: Client,
    metrics: Metrics,
    settings: ControllerSettings,
    watch_ns: Option<String>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let watch_ns = watch_ns.as_deref();
    let all = watcher::Config::default();
    let managed = watcher::Config::default().labels(&managed_selector());
    let ls = shared(watcher(scoped::<LogSource>(&client, watch_ns), all.clone()));
    let cg = shared(watcher(scoped::<ConsumerGroup>(&client, watch_ns), all.clone()));
    let dest = shared(watcher(scoped::<SiemDestination>(&client, watch_ns), all.clone()));
    // `Api<PartialObjectMeta<_>>` makes metadata-only requests (`Accept: ...;as=PartialObjectMetadataList`).
    let secret = shared(watcher(
        scoped::<kube::core::PartialObjectMeta<Secret>>(&client, watch_ns),
        all.clone(),
    ));
    let cm = shared(watcher(scoped::<ConfigMap>(&client, watch_ns), managed.clone()));
    let deploy = shared(watcher(scoped::<Deployment>(&client, watch_ns), managed));
    let stores = Stores {
        log_sources: ls.store.clone(),
        consumer_groups: cg.store.clone(),
        destinations: dest.store.clone(),
        secrets: secret.store.clone(),
        config_maps: cm.store.clone(),
        deployments: deploy.store.clone(),
    };
    let watches = futures::future::join_all([ls.run, cg.run, dest.run, secret.run, cm.run, deploy.run]);
    tokio::pin!(watches);

    // No reconcile before every store holds a full list: a ConsumerGroup reconciled before
    // the LogSources are known would scale its collector to zero.
    let ready = async {
        stores.log_sources.wait_until_ready().await?;
        stores.consumer_groups.wait_until_ready().await?;
        stores.destinations.wait_until_ready().await?;
        stores.secrets.wait_until_ready().await?;
        stores.config_maps.wait_until_ready().await?;
        stores.deployments.wait_until_ready().await
    };
    tokio::select! {
        _ = stop.cancelled() => return Ok(()),
        _ = &mut watches => anyhow::bail!("watches ended before the caches were filled"),
        r = ready => r.context("cache writer dropped")?,
    }
    tracing::info!(namespace = watch_ns.unwrap_or("(all)"), "caches filled; reconciling");

    let mut ctx = Context::new(
        client.clone(),
        metrics,
        stores.clone(),
        settings.collector_image,
        settings.connectivity,
        settings.instance,
    );
    ctx.collector_pod_defaults = settings.collector_pod_defaults;
    let ctx = Arc::new(ctx);

    // Every subscriber handle must be consumed (an idle one would stall its watch once the
    // fan-out buffer is full): each kind is cloned exactly as often as it is subscribed.
    let s = stores.clone();
    let s2 = stores.clone();
    let s3 = stores.clone();
    // A resource's own status write changes nothing it reads: its reconciles follow its spec.
    let log_source_controller = Controller::for_shared_stream(
        on_change(ls.handle.clone(), generation::<LogSource>),
        stores.log_sources.clone(),
    )
    .owns_shared_stream(deploy.handle.clone())
    .watches_shared_stream(on_change(dest.handle.clone(), destination_print), move |d| {
        triggers::log_sources_of_destination(&s, &d)
    })
    .watches_shared_stream(on_change(secret.handle.clone(), secret_print), move |secret| {
        triggers::log_sources_of_secret(&s2, &secret)
    })
    .watches_shared_stream(on_change(cg.handle.clone(), consumer_group_print), move |cg| {
        triggers::log_sources_of_consumer_group(&s3, &cg)
    })
    .reconcile_on(futures::stream::select_all([
        on_delete(&dest.deleted, {
            let s = stores.clone();
            move |d| triggers::log_sources_of_destination(&s, d)
        })
        .boxed(),
        on_delete(&secret.deleted, {
            let s = stores.clone();
            move |secret| triggers::log_sources_of_secret(&s, secret)
        })
        .boxed(),
        on_delete(&cg.deleted, {
            let s = stores.clone();
            move |cg| triggers::log_sources_of_consumer_group(&s, cg)
        })
        .boxed(),
    ]))
    .graceful_shutdown_on(stop.clone().cancelled_owned())
    .run(log_source::reconcile, log_source::error_policy, ctx.clone())
    .for_each(|result| async move { log_outcome("logsource", result) });

    let s = stores.clone();
    let s2 = stores.clone();
    let consumer_group_controller = Controller::for_shared_stream(
        on_change(cg.handle, generation::<ConsumerGroup>),
        stores.consumer_groups.clone(),
    )
    .owns_shared_stream(deploy.handle)
    .watches_shared_stream(on_change(ls.handle.clone(), generation::<LogSource>), |ls| {
        triggers::consumer_group_of_log_source(&ls)
    })
    .watches_shared_stream(on_change(dest.handle.clone(), destination_print), move |d| {
        triggers::consumer_groups_of_destination(&s, &d)
    })
    .watches_shared_stream(on_change(secret.handle.clone(), secret_print), move |secret| {
        triggers::consumer_groups_of_secret(&s2, &secret)
    })
    .reconcile_on(futures::stream::select_all([
        on_delete(&ls.deleted, |ls| {
            triggers::consumer_group_of_log_source(ls).into_iter().collect()
        })
        .boxed(),
        on_delete(&dest.deleted, {
            let s = stores.clone();
            move |d| triggers::consumer_groups_of_destination(&s, d)
        })
        .boxed(),
        on_delete(&secret.deleted, {
            let s = stores.clone();
            move |secret| triggers::consumer_groups_of_secret(&s, secret)
        })
        .boxed(),
    ]))
    .graceful_shutdown_on(stop.clone().cancelled_owned())
    .run(consumer_group::reconcile, consumer_group::error_policy, ctx.clone())
    .for_each(|result| async move { log_outcome("consumergroup", result) });

    let s = stores.clone();
    let destination_controller = Controller::for_shared_stream(
        on_change(dest.handle, generation::<SiemDestination>),
        stores.destinations.clone(),
    )
    .watches_shared_stream(on_change(secret.handle, secret_print), move |secret| {
        triggers::destinations_of_secret(&s, &secret)
    })
    .watches_shared_stream(on_change(ls.handle.clone(), generation::<LogSource>), |ls| {
        triggers::destinations_of_log_source(&ls)
    })
    .watches_shared_stream(cm.handle, |cm| triggers::destinations_in_report(&cm))
    .reconcile_on(futures::stream::select_all([
        on_delete(&ls.deleted, triggers::destinations_of_log_source).boxed(),
        on_delete(&secret.deleted, {
            let s = stores.clone();
            move |secret| triggers::destinations_of_secret(&s, secret)
        })
        .boxed(),
    ]))
    .graceful_shutdown_on(stop.clone().cancelled_owned())
    .run(destination::reconcile, destination::error_policy, ctx.clone())
    .for_each(|result| async move { log_outcome("siemdestination", result) });

    // Notifiers: a watch of their own (their status is written by this controller alone); a
    // LogSource triggers the Notifiers selecting it when its labels or watched conditions move.
    let notifier_controller = Controller::new(scoped::<crate::api::Notifier>(&client, watch_ns), all.clone());
    let notifiers = notifier_controller.store();
    let nctx = Arc::new(notifier::NotifierContext::new(
        ctx.clone(),
        Arc::new(notifier::ApiSecrets(client.clone())),
    ));
    let notifier_controller = notifier_controller
        .watches_shared_stream(on_change(ls.handle, notifier_print), move |ls| {
            notifier::notifiers_of_log_source(&notifiers, &ls)
        })
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(notifier::reconcile, notifier::error_policy, nctx)
        .for_each(|result| async move { log_outcome("notifier", result) });

    let controllers = futures::future::join4(
        log_source_controller,
        consumer_group_controller,
        destination_controller,
        notifier_controller,
    );
    tokio::select! {
        _ = controllers => {}
        _ = &mut watches => anyhow::bail!("watches ended unexpectedly"),
    }
    tracing::info!("controllers stopped");
    Ok(())
}

fn log_outcome<K, E, Q>(
    controller: &str,
    result: Result<
        (
            kube::runtime::reflector::ObjectRef<K>,
            kube::runtime::controller::Action,
        ),
        kube::runtime::controller::Error<E, Q>,
    >,
) where
    K: kube::Resource,
    K::DynamicType: std::fmt::Debug,
    E: std::error::Error,
    Q: std::error::Error,
{
    match result {
        Ok((obj, _)) => tracing::debug!(controller, object = %obj, "reconciled"),
        Err(kube::runtime::controller::Error::ObjectNotFound(obj)) => {
            tracing::debug!(controller, object = %obj, "object gone before its reconcile")
        }
        Err(error) => tracing::debug!(controller, %error, "reconcile error (handled by the error policy)"),
    }
}
