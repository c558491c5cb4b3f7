//! The operator's own Kubernetes API requests, counted by verb and resource as the API server
//! names them (`GET`, `LIST`, `WATCH`, `CREATE`, `UPDATE`, `PATCH`, `APPLY`, `DELETE`), on a
//! tower layer of the operator's client: `siembridge_operator_api_requests_total{verb,resource}`.
//!
//! This is how "a reconcile of an unchanged object makes no API write" is checked: the cluster
//! suite `cluster_steady_state` and the `operator_scale` bench read these counts.

use std::collections::BTreeMap;

use http::{Method, Request};
use prometheus::{IntCounterVec, Opts, Registry};

/// Verbs that change nothing on the server.
pub const READ_VERBS: [&str; 3] = ["GET", "LIST", "WATCH"];

/// Counter of API requests by verb and resource.
#[derive(Clone)]
pub struct ApiRequests {
    counter: IntCounterVec,
}

impl ApiRequests {
    /// A counter registered in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter = IntCounterVec::new(
            Opts::new(
                "siembridge_operator_api_requests_total",
                "Kubernetes API requests of the operator, by verb and resource (resource/subresource)",
            ),
            &["verb", "resource"],
        )?;
        registry.register(Box::new(counter.clone()))?;
        Ok(ApiRequests { counter })
    }

    /// A counter in a registry of its own (tests).
    pub fn unregistered() -> Self {
        Self::new(&Registry::new()).unwrap_or_else(|e| unreachable!("fresh registry: {e}"))
    }

    /// Count one request.
    pub fn observe<B>(&self, request: &Request<B>) {
        let (verb, resource) = classify(request);
        self.counter.with_label_values(&[verb, &resource]).inc();
    }

    /// A tower layer counting every request of a client built on it
    /// (`kube::client::ClientBuilder::with_layer`).
    pub fn layer<B>(&self) -> tower::util::MapRequestLayer<impl Fn(Request<B>) -> Request<B> + Clone> {
        let this = self.clone();
        tower::util::MapRequestLayer::new(move |request: Request<B>| {
            this.observe(&request);
            request
        })
    }

    /// A client on `config` whose requests are counted here.
    pub fn client(&self, config: kube::Config) -> Result<kube::Client, kube::Error> {
        Ok(kube::client::ClientBuilder::try_from(config)?
            .with_layer(&self.layer())
            .build())
    }

    /// Counts so far, by `(verb, resource)`.
    pub fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        use prometheus::core::Collector;
        let mut out = BTreeMap::new();
        for family in self.counter.collect() {
            for metric in family.get_metric() {
                let label = |name: &str| {
                    metric
                        .get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map(|l| l.value().to_string())
                        .unwrap_or_default()
                };
                out.insert(
                    (label("verb"), label("resource")),
                    metric.get_counter().get_value() as u64,
                );
            }
        }
        out
    }

    /// Writes so far (every verb but `GET`, `LIST`, `WATCH`), by `(verb, resource)`.
    pub fn writes(&self) -> BTreeMap<(String, String), u64> {
        self.snapshot()
            .into_iter()
            .filter(|((verb, _), n)| *n > 0 && !READ_VERBS.contains(&verb.as_str()))
            .collect()
    }
}

/// The API server's verb and the resource (`resource` or `resource/subresource`) of a request;
/// `other` for paths outside `/api` and `/apis` (`/version`).
pub fn classify<B>(request: &Request<B>) -> (&'static str, String) {
    let path = request.uri().path();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest: &[&str] = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => &[],
    };
    let rest = match rest {
        ["namespaces", _ns, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let resource = match rest {
        [] => "other".to_string(),
        [resource] | [resource, _] => resource.to_string(),
        [resource, _, sub, ..] => format!("{resource}/{sub}"),
    };
    let named = rest.len() >= 2;
    let query = request.uri().query().unwrap_or("");
    let watch = query.split('&').any(|p| p == "watch=true" || p == "watch=1");
    let verb = match *request.method() {
        Method::GET if watch => "WATCH",
        Method::GET if named || rest.is_empty() => "GET",
        Method::GET => "LIST",
        Method::POST => "CREATE",
        Method::PUT => "UPDATE",
        Method::PATCH => {
            let apply = request
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/apply-patch"));
            if apply {
                "APPLY"
            } else {
                "PATCH"
            }
        }
        Method::DELETE if named => "DELETE",
        Method::DELETE => "DELETECOLLECTION",
        _ => "OTHER",
    };
    (verb, resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str, content_type: Option<&str>) -> Request<()> {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            b = b.header("content-type", ct);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn requests_are_classified_as_the_api_server_names_them() {
        let cases = [
            (
                req("GET", "/api/v1/namespaces/a/secrets?watch=true&resourceVersion=1", None),
                ("WATCH", "secrets"),
            ),
            (req("GET", "/api/v1/secrets?limit=500", None), ("LIST", "secrets")),
            (
                req("GET", "/api/v1/namespaces/a/configmaps/x", None),
                ("GET", "configmaps"),
            ),
            (req("GET", "/api/v1/namespaces/a", None), ("GET", "namespaces")),
            (
                req(
                    "PATCH",
                    "/apis/siembridge.io/v1alpha1/namespaces/a/logsources/x/status?fieldManager=f",
                    Some("application/apply-patch+yaml"),
                ),
                ("APPLY", "logsources/status"),
            ),
            (
                req(
                    "PATCH",
                    "/apis/apps/v1/namespaces/a/deployments/x",
                    Some("application/merge-patch+json"),
                ),
                ("PATCH", "deployments"),
            ),
            (
                req("POST", "/apis/events.k8s.io/v1/namespaces/a/events", None),
                ("CREATE", "events"),
            ),
            (
                req("PUT", "/apis/coordination.k8s.io/v1/namespaces/a/leases/l", None),
                ("UPDATE", "leases"),
            ),
            (
                req("DELETE", "/api/v1/namespaces/a/serviceaccounts/x", None),
                ("DELETE", "serviceaccounts"),
            ),
            (req("GET", "/version", None), ("GET", "other")),
        ];
        for (request, (verb, resource)) in cases {
            assert_eq!(classify(&request), (verb, resource.to_string()), "{}", request.uri());
        }
        let counts = ApiRequests::unregistered();
        counts.observe(&req("GET", "/api/v1/secrets", None));
        counts.observe(&req("POST", "/apis/events.k8s.io/v1/namespaces/a/events", None));
        assert_eq!(
            counts.writes(),
            BTreeMap::from([(("CREATE".to_string(), "events".to_string()), 1)])
        );
    }
}
