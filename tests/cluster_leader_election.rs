//! Leader election with two operator processes (the built binary) on a real API server
//! (`KUBECONFIG`): only the leader reconciles (the standby's `siembridge_operator_reconciles_total`
//! stays absent), and when the leader is killed (SIGKILL: no step-down, its Lease just stops
//! being renewed) the standby takes over within 30 s and reconciles what changed meanwhile.

#[path = "common/cluster.rs"]
mod cluster;
#[path = "common/operator_fixtures.rs"]
mod fixtures;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster::{client, eventually, install_crds, TestNamespace};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use siembridge::operator::leader::LEASE_NAME;

/// Handover bound of the issue.
const HANDOVER: Duration = Duration::from_secs(30);

/// An operator process, killed when dropped.
struct Operator {
    child: Child,
    metrics: String,
    identity: String,
}

impl Operator {
    fn start(namespace: &str, identity: &str) -> Operator {
        let metrics = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let child = Command::new(env!("CARGO_BIN_EXE_siembridge"))
            .args([
                "operator",
                "--metrics-addr",
                &metrics,
                "--leader-namespace",
                namespace,
                "--identity",
                identity,
                "--watch-namespaces",
                namespace,
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("operator binary");
        Operator {
            child,
            metrics,
            identity: identity.into(),
        }
    }

    /// Reconciles started, from its `/metrics`; `None` while it does not answer.
    async fn reconciles(&self) -> Option<u64> {
        let text = reqwest::get(format!("http://{}/metrics", self.metrics))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        Some(
            text.lines()
                .filter(|l| l.starts_with("siembridge_operator_reconciles_total{"))
                .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
                .sum::<f64>() as u64,
        )
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn holder(client: &kube::Client, namespace: &str) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), namespace)
        .get(LEASE_NAME)
        .await
        .ok()?
        .spec?
        .holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_a_killed_leader_hands_over_within_30s() {
    let Some(admin) = client("cluster_leader_election").await else {
        return;
    };
    install_crds(&admin).await;
    let ns = TestNamespace::create(&admin, "sb-leader").await;
    let (port, listener) = fixtures::listener().await;
    fixtures::destination(&admin, &ns.name, port).await;
    fixtures::log_source(&admin, &ns.name, "audit-1").await;

    let mut first = Operator::start(&ns.name, "operator-a");
    eventually("operator-a holds the leader Lease", || async {
        (holder(&admin, &ns.name).await.as_deref() == Some("operator-a")).then_some(())
    })
    .await;
    eventually("audit-1 reconciled by the leader", || {
        fixtures::reconciled(&admin, &ns.name, "audit-1")
    })
    .await;

    let second = Operator::start(&ns.name, "operator-b");
    eventually("operator-b serves /metrics", || second.reconciles()).await;
    fixtures::log_source(&admin, &ns.name, "audit-2").await;
    eventually("audit-2 reconciled by the leader", || {
        fixtures::reconciled(&admin, &ns.name, "audit-2")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (leader_count, standby_count) = (
        first.reconciles().await.unwrap_or(0),
        second.reconciles().await.unwrap_or(u64::MAX),
    );
    println!(
        "while {} leads: its reconciles {leader_count}, standby {} reconciles {standby_count}",
        first.identity, second.identity
    );
    assert!(leader_count > 0, "the leader reconciled nothing");
    assert_eq!(standby_count, 0, "the standby reconciled");
    assert_eq!(holder(&admin, &ns.name).await.as_deref(), Some("operator-a"));

    // SIGKILL the leader; a change made right after must be reconciled by the standby.
    first.kill();
    let killed = Instant::now();
    fixtures::log_source(&admin, &ns.name, "audit-3").await;
    eventually("operator-b holds the leader Lease", || async {
        (holder(&admin, &ns.name).await.as_deref() == Some("operator-b")).then_some(())
    })
    .await;
    let took_lease = killed.elapsed();
    eventually("audit-3 reconciled by the new leader", || {
        fixtures::reconciled(&admin, &ns.name, "audit-3")
    })
    .await;
    let handover = killed.elapsed();
    let new_leader_count = second.reconciles().await.unwrap_or(0);
    println!(
        "leader SIGKILLed: operator-b took the Lease after {:.1} s and reconciled the new LogSource after {:.1} s ({new_leader_count} reconciles)",
        took_lease.as_secs_f64(),
        handover.as_secs_f64()
    );
    assert!(new_leader_count > 0, "the new leader reconciled nothing");
    assert!(handover <= HANDOVER, "handover took {handover:?}");
    drop(second);
    listener.abort();
}
