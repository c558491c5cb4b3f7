"""Runs the Argo CD health check (charts/siembridge/argocd/health.lua) with Lua 5.4 against
sample objects of each siembridge kind and checks the status Argo CD would show.

Argo CD runs the script with the live object as the global `obj`; here each sample is turned
into a Lua table literal and the script is run by `lua5.4` the same way. Prints one line per
sample and ends with "argocd-health: N passed, N failed".
"""
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "charts", "siembridge", "argocd", "health.lua")


def lua(value):
    """A Lua literal of a JSON-like value (tables for objects and lists)."""
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid Lua string literal for this text
    if isinstance(value, list):
        return "{" + ", ".join(lua(v) for v in value) + "}"
    return "{" + ", ".join("[%s] = %s" % (json.dumps(k), lua(v)) for k, v in value.items()) + "}"


def cond(kind, status, reason, message=""):
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-12-01T00:00:00Z", "observedGeneration": 2}


def obj(kind, conditions, generation=2, observed=2, spec=None):
    o = {"apiVersion": "siembridge.io/v1alpha1", "kind": kind,
         "metadata": {"name": "sample", "namespace": "secops", "generation": generation},
         "spec": spec or {}}
    if conditions is not None:
        o["status"] = {"conditions": conditions, "observedGeneration": observed}
    return o


SAMPLES = [
    # (name, object, expected status)
    ("LogSource without status", obj("LogSource", None), "Progressing"),
    ("LogSource collecting", obj("LogSource", [cond("Ready", "True", "Collecting", "events flow"),
                                               cond("Progressing", "False", "DeploymentReady")]), "Healthy"),
    ("LogSource with data loss still healthy", obj("LogSource", [
        cond("Ready", "True", "Collecting"), cond("DataLoss", "True", "ContentExpired", "2 h lost")]), "Healthy"),
    ("LogSource rolling", obj("LogSource", [cond("Ready", "False", "DeploymentProgressing"),
                                            cond("Progressing", "True", "DeploymentProgressing", "1/1 updating")]),
     "Progressing"),
    ("LogSource destination forbidden", obj("LogSource", [
        cond("Ready", "False", "DestinationNotReady", "splunk: Forbidden"),
        cond("Progressing", "False", "DeploymentReady")]), "Degraded"),
    ("LogSource secret missing", obj("LogSource", [cond("Ready", "False", "SecretNotFound", "o365-app/clientSecret")]),
     "Degraded"),
    ("LogSource suspended", obj("LogSource", [cond("Ready", "False", "Suspended")], spec={"suspend": True}),
     "Suspended"),
    ("LogSource spec not yet observed", obj("LogSource", [cond("Ready", "True", "Collecting")], generation=3,
                                            observed=2), "Progressing"),
    ("LogSource awaiting first report", obj("LogSource", [cond("Ready", "Unknown", "AwaitingReport")]),
     "Progressing"),
    ("ConsumerGroup balanced", obj("ConsumerGroup", [cond("Ready", "True", "AllReady"),
                                                     cond("Balanced", "True", "AsExpected")]), "Healthy"),
    ("ConsumerGroup pods unavailable", obj("ConsumerGroup", [
        cond("Ready", "False", "DeploymentUnavailable", "0/3 ready"),
        cond("Progressing", "False", "DeploymentReady")]), "Degraded"),
    ("ConsumerGroup scaling", obj("ConsumerGroup", [cond("Ready", "False", "DeploymentProgressing"),
                                                    cond("Progressing", "True", "DeploymentProgressing")]),
     "Progressing"),
    ("ConsumerGroup unused", obj("ConsumerGroup", [cond("Ready", "False", "NoLogSources")]), "Healthy"),
    ("SiemDestination ready", obj("SiemDestination", [cond("Ready", "True", "AsExpected", "HTTP 200")]), "Healthy"),
    ("SiemDestination unauthorized", obj("SiemDestination", [
        cond("Ready", "False", "Unauthorized", "HTTP 401 from the receiver")]), "Degraded"),
    ("SiemDestination unused", obj("SiemDestination", [cond("Ready", "False", "NoLogSources")]), "Healthy"),
]


def main():
    exe = shutil.which("lua5.4") or shutil.which("lua")
    if exe is None:
        if os.environ.get("CI") == "true":
            print("argocd-health: lua5.4 is not installed")
            print("argocd-health: 0 passed, 1 failed")
            return 1
        print("skipped: lua5.4 is not installed (apt-get install lua5.4)")
        return 0
    passed = failed = 0
    for name, sample, expected in SAMPLES:
        chunk = "obj = %s\nlocal hs = dofile(%s)\nio.write(hs.status, '\\t', hs.message or '')" % (
            lua(sample), json.dumps(SCRIPT))
        run = subprocess.run([exe, "-e", chunk], capture_output=True, text=True)
        status, _, message = run.stdout.partition("\t")
        if run.returncode == 0 and status == expected:
            passed += 1
            print("ok: %s -> %s (%s)" % (name, status, message))
        else:
            failed += 1
            print("FAILED: %s -> %r, expected %s; %s" % (name, run.stdout, expected, run.stderr.strip()))
    print("argocd-health: %d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
