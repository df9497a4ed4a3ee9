"""Checks the Kubernetes manifests in deploy/kubernetes against what Miroir needs.

Usage: check_manifests.py REPO_ROOT BIN_DIR. Every MIROIR_* variable a manifest sets must
be one the binaries document in --help; the invariants of issue 5 (three control-plane
replicas on a Postgres URL from a Secret, a PodDisruptionBudget, gRPC health readiness;
gateways as a Deployment with an HPA on CPU and readiness on /_miroir/ready; Services;
a Meilisearch StatefulSet) must hold. Prints "all checks passed" at the end.
"""

import pathlib
import subprocess
import sys

import yaml

root = pathlib.Path(sys.argv[1])
bin_dir = pathlib.Path(sys.argv[2])

documents = []
for path in sorted((root / "deploy" / "kubernetes").glob("*.yaml")):
    for document in yaml.safe_load_all(path.read_text()):
        if document:
            documents.append((path.name, document))
assert documents, "no manifests found"


def find(kind, name):
    found = [d for _, d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def check_selects(selector, labels, what):
    for key, value in selector.items():
        assert labels.get(key) == value, f"{what}: selector {key}={value} does not match {labels}"


# Every MIROIR_* variable is a documented flag of the binary the container runs.
help_text = {}
for binary in ("miroir-control-plane", "miroir-gateway"):
    help_text[binary] = subprocess.run(
        [str(bin_dir / binary), "--help"], capture_output=True, text=True, check=True
    ).stdout
for file, document in documents:
    spec = document.get("spec", {}).get("template", {}).get("spec", {})
    for container in spec.get("containers", []):
        command = (container.get("command") or [""])[0]
        for name in env_of(container):
            if name.startswith("MIROIR_"):
                assert command in help_text, f"{file}: {name} set for unknown command {command!r}"
                assert name in help_text[command], f"{file}: {command} has no {name}"

secret = find("Secret", "miroir-secrets")
secret_keys = set(secret["stringData"])
for file, document in documents:
    for container in document.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
        for entry in container.get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == "miroir-secrets" and ref["key"] in secret_keys, f"{file}: {ref}"

# Control planes: three replicas, the store from the Secret, gRPC health readiness, a PDB.
cp = find("StatefulSet", "miroir-control-plane")
assert cp["spec"]["replicas"] == 3
check_selects(cp["spec"]["selector"]["matchLabels"], cp["spec"]["template"]["metadata"]["labels"], "control plane")
cp_container = cp["spec"]["template"]["spec"]["containers"][0]
cp_env = env_of(cp_container)
assert cp_env["MIROIR_STORE"]["valueFrom"]["secretKeyRef"]["key"] == "postgres-url"
assert cp_env["MIROIR_CONTROL_PLANE_REPLICAS"]["value"] == "3"
assert cp_container["readinessProbe"]["grpc"]["port"] == 7070
headless = find("Service", cp["spec"]["serviceName"])
assert headless["spec"]["clusterIP"] == "None"
check_selects(headless["spec"]["selector"], cp["spec"]["template"]["metadata"]["labels"], "control-plane service")
pdb = find("PodDisruptionBudget", "miroir-control-plane")
assert pdb["spec"]["minAvailable"] >= 2
check_selects(pdb["spec"]["selector"]["matchLabels"], cp["spec"]["template"]["metadata"]["labels"], "PDB")

# Gateways: a Deployment with CPU requests, readiness on /_miroir/ready, an HPA on CPU,
# every control-plane replica listed, and a Service in front.
gateway = find("Deployment", "miroir-gateway")
check_selects(gateway["spec"]["selector"]["matchLabels"], gateway["spec"]["template"]["metadata"]["labels"], "gateway")
gw_container = gateway["spec"]["template"]["spec"]["containers"][0]
assert gw_container["readinessProbe"]["httpGet"]["path"] == "/_miroir/ready"
assert gw_container["resources"]["requests"]["cpu"]
expected = [
    f"http://{cp['metadata']['name']}-{i}.{cp['spec']['serviceName']}:7070" for i in range(cp["spec"]["replicas"])
]
assert env_of(gw_container)["MIROIR_CONTROL_PLANE"]["value"].split(",") == expected
hpa = find("HorizontalPodAutoscaler", "miroir-gateway")
assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "miroir-gateway"}
assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["spec"]["metrics"])
service = find("Service", "miroir")
check_selects(service["spec"]["selector"], gateway["spec"]["template"]["metadata"]["labels"], "gateway service")

# Meilisearch: a StatefulSet with a volume per node and the shared master key.
meili = find("StatefulSet", "meilisearch")
assert meili["spec"]["volumeClaimTemplates"]
meili_env = env_of(meili["spec"]["template"]["spec"]["containers"][0])
assert meili_env["MEILI_MASTER_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "master-key"

print(f"{len(documents)} manifests: all checks passed")
