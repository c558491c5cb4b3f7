#!/usr/bin/env python3
"""Lint and render a Helm chart with Helm's own Go engine (the helm-python-sdk wheel).

Usage:
    helm_render.py CHART [--values FILE.json|FILE.yaml] [--set-json JSON] [--name NAME]
                   [--namespace NS] [--json]

Values are checked against the chart's values.schema.json, the chart is linted (strict) with
those values, then rendered offline. Without --json the manifests are printed as one
multi-document YAML stream, CRDs first, as `helm template --include-crds` would. With --json one
object is printed: {"lint": {...}, "crds": {file: yaml}, "manifests": {template: yaml}}.

Exit status: 0 rendered; 1 the values, the lint or the rendering failed (reason on stderr);
3 the helm_python module is not installed (run e2e/test-all.sh to create e2e/.venv).
"""

import argparse
import json
import sys

EXIT_FAILED = 1
EXIT_NO_MODULE = 3

try:
    import helm_python as helm
except ImportError as err:  # the Rust test turns this exit code into a clear failure
    print(
        f"helm_python is not importable from {sys.executable} ({err}); "
        "run e2e/test-all.sh (it creates e2e/.venv and installs e2e/requirements.txt) "
        "and export SIEMBRIDGE_TEST_PYTHON=$PWD/e2e/.venv/bin/python",
        file=sys.stderr,
    )
    sys.exit(EXIT_NO_MODULE)


def load_values(args):
    values = {}
    if args.values:
        with open(args.values, encoding="utf-8") as f:
            text = f.read()
        values = json.loads(text) if args.values.endswith(".json") else helm.values_from_yaml(text)
    if args.set_json:
        values = deep_merge(values, json.loads(args.set_json))
    return values


def deep_merge(base, override):
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chart")
    parser.add_argument("--values", help="values file (.json or YAML)")
    parser.add_argument("--set-json", help="values as a JSON object, merged over --values")
    parser.add_argument("--name", default="siembridge", help="release name")
    parser.add_argument("--namespace", default="siembridge", help="release namespace")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    try:
        values = load_values(args)
        report = helm.lint(args.chart, values, strict=True, namespace=args.namespace)
        problems = [m for m in report.get("messages") or [] if m.get("severity", 0) >= 2]
        errors = list(report.get("errors") or []) + [
            f"{m.get('path')}: {m.get('error')}" for m in problems
        ]
        if errors:
            print("helm lint failed:\n  " + "\n  ".join(errors), file=sys.stderr)
            return EXIT_FAILED
        with helm.Chart.load(args.chart) as chart:
            chart.validate_schema(values)
            crds = {c["filename"]: c["data"] for c in chart.crds}
            manifests = chart.render(
                values, name=args.name, namespace=args.namespace, is_install=True
            )
    except helm.HelmError as err:
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_FAILED

    # NOTES.txt is text for the user, not a manifest.
    manifests = {k: v for k, v in manifests.items() if not k.endswith("NOTES.txt")}
    if args.json:
        json.dump({"lint": report, "crds": crds, "manifests": manifests}, sys.stdout, indent=1)
        print()
        return 0
    for name in sorted(crds):
        print(f"---\n# Source: {name}\n{crds[name].strip()}")
    for name in sorted(manifests):
        body = manifests[name].strip()
        if body:
            print(f"---\n# Source: {name}\n{body}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
