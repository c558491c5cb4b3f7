#!/usr/bin/env bash
# Sets up everything the tests need on a fresh machine, then runs every test.
# This is the README's test command and exactly what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each phase prints its start and the time spent so far, so a slow run shows where it went.
phase() { echo "== $* (at $((SECONDS / 60))m$((SECONDS % 60))s)"; }
phase setup
# Helm's own Go engine (through the helm-python-sdk wheel) renders and lints the chart.
if [ ! -x e2e/.venv/bin/python ]; then
    python3 -m venv e2e/.venv
fi
e2e/.venv/bin/pip install --quiet --disable-pip-version-check -r e2e/requirements.txt
export SIEMBRIDGE_TEST_PYTHON="$PWD/e2e/.venv/bin/python"
# Azurite (Blob archive and Blob checkpoint tests), pinned: an unpinned azurite@3 resolved to an older release.
if [ ! -x e2e/.azurite/node_modules/.bin/azurite-blob ]; then
    npm install --prefix e2e/.azurite --no-audit --no-fund azurite@3.37.0
fi
# rsyslog with its TLS stream drivers and RELP input (syslog destination tests); buildah (container image test);
# Lua 5.4 (Argo CD health check test); promtool from prometheus (alert rule unit tests).
if [ ! -x /usr/sbin/rsyslogd ] || [ ! -e /usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_ossl.so ] \
    || [ ! -e /usr/lib/x86_64-linux-gnu/rsyslog/imrelp.so ] \
    || ! command -v buildah >/dev/null || ! command -v lua5.4 >/dev/null || ! command -v promtool >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsyslog rsyslog-openssl rsyslog-relp \
        buildah lua5.4 prometheus
fi

# A real Kubernetes API server for the cluster suites (tests/*cluster*.rs): KUBECONFIG when set,
# else the control plane in ../shared/k8s (etcd, kube-apiserver, kube-controller-manager), which
# up.sh starts or reuses. Only what this script started is stopped at the end.
phase "Kubernetes API server"
k8s_dir="${K8S_DIR:-${TMPDIR:-/tmp}/siembridge-k8s}"
k8s_running() { # any of the control plane's processes alive, per up.sh's pid files
    local n pid
    for n in etcd kube-apiserver kube-controller-manager; do
        pid="$(cat "$k8s_dir/run/$n.pid" 2>/dev/null)" || continue
        kill -0 "$pid" 2>/dev/null && return 0
    done
    return 1
}
if [ -n "${KUBECONFIG:-}" ]; then
    echo "cluster suites use KUBECONFIG=$KUBECONFIG"
elif [ -f ../shared/k8s/up.sh ]; then
    # up.sh unpacks with xz, makes certificates with openssl and probes with curl.
    if ! command -v xz >/dev/null || ! command -v openssl >/dev/null || ! command -v curl >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xz-utils openssl curl
    fi
    if k8s_running; then
        started_k8s=""
    else
        started_k8s=yes
        # Set before up.sh: a start that fails half-way is stopped too.
        trap 'echo "== stopping the API server this run started"; bash ../shared/k8s/down.sh' EXIT
    fi
    k8s_env="$(bash ../shared/k8s/up.sh | tail -1)"
    case "$k8s_env" in
        "export KUBECONFIG="*) eval "$k8s_env" ;;
        *) echo "../shared/k8s/up.sh did not start the API server (logs in $k8s_dir/logs)" >&2; exit 1 ;;
    esac
    export KUBECONFIG
    echo "cluster suites use ${started_k8s:+a new }API server $KUBECONFIG"
elif [ "${CI:-}" = "true" ]; then
    echo "CI=true but no API server: set KUBECONFIG or put the control plane in ../shared/k8s" >&2
    exit 1
else
    echo "no KUBECONFIG and no ../shared/k8s: the cluster suites will skip (saying so)"
fi

phase "format"
cargo fmt --check

# Clippy and the release build of the image share nothing with the test build, and the tests spend
# much of their time waiting (API server, timeouts, child processes): both run in the background at
# the lowest CPU priority, using what the test build and the tests leave idle. Clippy has its own
# target directory (the test build holds target/debug's lock); the release build uses
# target/release, which e2e/test-image.sh then finds up to date.
phase "lint and release build (background, nice 19)"
background_log="$(mktemp)"
(
    nice -n 19 env CARGO_TARGET_DIR=target/clippy cargo clippy --all-targets --locked -- -D warnings \
        && echo "== clippy: clean" || { echo "== clippy: FAILED"; exit 1; }
    nice -n 19 cargo build --release --locked --bin siembridge || { echo "== release build: FAILED"; exit 1; }
) >"$background_log" 2>&1 &
background=$!

phase "Argo CD health check"
python3 e2e/test_argocd_health.py

phase "tests"
# --no-fail-fast: a failing binary does not hide the results of the ones after it.
tests_status=0
cargo test --all-targets --locked --no-fail-fast || tests_status=$?

phase "waiting for lint and release build"
background_status=0
wait "$background" || background_status=$?
grep -E "^(==|warning|error)" "$background_log" | head -100 || true
if [ "$background_status" -ne 0 ]; then
    tail -50 "$background_log"
fi
rm -f "$background_log"

phase "container image"
image_status=0
e2e/test-image.sh || image_status=$?

phase "done"
echo "tests: exit $tests_status; clippy and release build: exit $background_status; image: exit $image_status"
[ "$tests_status" -eq 0 ] && [ "$background_status" -eq 0 ] && [ "$image_status" -eq 0 ]
