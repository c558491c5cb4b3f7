#!/usr/bin/env bash
# Sets up everything the tests need on a fresh machine, then runs every test.
# This is the README's test command and exactly what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== setup"
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
# rsyslog with its TLS stream drivers and RELP input (syslog destination tests).
if [ ! -x /usr/sbin/rsyslogd ] || [ ! -e /usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_ossl.so ] \
    || [ ! -e /usr/lib/x86_64-linux-gnu/rsyslog/imrelp.so ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsyslog rsyslog-openssl rsyslog-relp
fi

echo "== format and lint"
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings

echo "== tests"
cargo test --all-targets --locked
