"""Checks the deployment files in deploy/ against what Miroir needs.

Usage: check_manifests.py REPO_ROOT BIN_DIR. Every MIROIR_* variable a Kubernetes manifest
sets must be one the binaries document in --help; the invariants of issue 5 (three
control-plane replicas on a Postgres URL from a Secret, a PodDisruptionBudget, gRPC health
readiness; gateways as a Deployment with an HPA on CPU and readiness on /_miroir/ready;
Services; a Meilisearch StatefulSet) must hold. The observability wiring must connect, in
Kubernetes and in the one-machine setup (deploy/systemd, deploy/grafana/provisioning):
gateways and control planes export OTLP to the port Tempo receives OTLP gRPC on, Grafana
reads traces from that same Tempo's HTTP port, Prometheus scrapes every gateway's and
control plane's metrics port, and Grafana loads the dashboard. Prints "all checks passed"
at the end.
"""

import json
import pathlib
import posixpath
import shlex
import subprocess
import sys
from urllib.parse import urlsplit

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


# Observability (Kubernetes): a URL names a Service port; follow it to the pod's container
# port and to the config that pod's process reads, so a port renumbered on one side only
# fails here.
def host_port(address):
    host, _, port = address.rpartition(":")
    return host, int(port)


def selected_workload(service):
    """The one Deployment or StatefulSet whose pods the Service selects."""
    found = [
        d
        for _, d in documents
        if d["kind"] in ("Deployment", "StatefulSet")
        and all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in service["spec"]["selector"].items())
    ]
    assert len(found) == 1, f"Service {service['metadata']['name']} selects {len(found)} workloads"
    return found[0]


def service_target(url, port_name):
    """For http://SERVICE:PORT: the workload behind that Service port (which must be named
    port_name), its container and the container port the traffic reaches."""
    parts = urlsplit(url)
    assert parts.scheme == "http" and parts.port, f"{url}: expected http://SERVICE:PORT"
    service = find("Service", parts.hostname)
    ports = [p for p in service["spec"]["ports"] if p["port"] == parts.port]
    assert len(ports) == 1, f"{url}: Service {parts.hostname} has no port {parts.port}"
    assert ports[0].get("name") == port_name, f"{url}: port {parts.port} is {ports[0].get('name')!r}, not {port_name!r}"
    workload = selected_workload(service)
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{url}: expected one container behind it"
    container = containers[0]
    target = ports[0].get("targetPort", ports[0]["port"])
    by_name = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    if isinstance(target, str):
        assert target in by_name, f"{url}: targetPort {target} is no container port"
        target = by_name[target]
    assert target in by_name.values(), f"{url}: port {target} is no container port of {workload['metadata']['name']}"
    return workload, container, target


def mounted_configmap(workload, container, directory):
    """The files a ConfigMap volume puts in directory, parsed as YAML."""
    mounts = [m for m in container.get("volumeMounts", []) if m["mountPath"] == directory]
    assert len(mounts) == 1, f"{workload['metadata']['name']}: nothing mounted at {directory}"
    volumes = [v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == mounts[0]["name"]]
    configmap = find("ConfigMap", volumes[0]["configMap"]["name"])
    return {key: yaml.safe_load(text) for key, text in configmap["data"].items()}


def config_file(workload, container):
    """The YAML file the container's -config.file / --config.file flag names."""
    values = [a.split("=", 1)[1] for a in container.get("args", []) if a.lstrip("-").startswith("config.file=")]
    assert len(values) == 1, f"{workload['metadata']['name']}: no -config.file"
    directory, name = posixpath.split(values[0])
    files = mounted_configmap(workload, container, directory)
    assert name in files, f"{workload['metadata']['name']}: {values[0]} is not in its ConfigMap"
    return files[name]


ANY_INTERFACE = ("0.0.0.0", "", "[::]")


def otlp_grpc_listen(tempo_config):
    return host_port(tempo_config["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])


def http_listen(tempo_config):
    server = tempo_config["server"]
    return server.get("http_listen_address", ""), server["http_listen_port"]


# Gateways and control planes export spans to a Service port named for OTLP gRPC, behind
# which Tempo receives OTLP gRPC on that very port, on every interface (a pod's loopback
# is its own), and keeps its data on a volume.
tempos = []
for workload, container in ((gateway, gw_container), (cp, cp_container)):
    what = workload["metadata"]["name"]
    url = env_of(container).get("OTEL_EXPORTER_OTLP_ENDPOINT", {}).get("value")
    assert url, f"{what}: no OTEL_EXPORTER_OTLP_ENDPOINT"
    tempo, tempo_container, port = service_target(url, "otlp-grpc")
    config = config_file(tempo, tempo_container)
    host, receiver = otlp_grpc_listen(config)
    assert receiver == port and host in ANY_INTERFACE, f"{what}: {url} reaches port {port}, Tempo receives OTLP gRPC on {host}:{receiver}"
    tempos.append(tempo["metadata"]["name"])
assert len(set(tempos)) == 1, f"gateways and control planes export to different Tempos: {tempos}"
volume_paths = [m["mountPath"].rstrip("/") + "/" for m in tempo_container.get("volumeMounts", [])]
for path in (config["storage"]["trace"]["wal"]["path"], config["storage"]["trace"]["local"]["path"]):
    assert any(path.startswith(v) for v in volume_paths), f"Tempo's {path} is on no volume"

# The dashboard reads Prometheus through a "datasource" variable of one data source type.
dashboard = json.loads((root / "deploy" / "grafana" / "miroir.json").read_text())
variables = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
assert [v["name"] for v in variables] == ["datasource"], "the dashboard's data source variable changed"
dashboard_type = variables[0]["query"]


def datasources_of(files, kind):
    found = [d for f in files for d in (f or {}).get("datasources", []) if d["type"] == kind]
    assert len(found) == 1, f"expected one {kind} data source, found {len(found)}"
    return found[0]


# Grafana: a Tempo data source on the HTTP port of the Tempo the fleet exports to, a
# Prometheus one for the dashboard, and the dashboard provider's folder mounted from the
# miroir-dashboards ConfigMap.
grafana = find("Deployment", "grafana")
grafana_container = grafana["spec"]["template"]["spec"]["containers"][0]
datasources = mounted_configmap(grafana, grafana_container, "/etc/grafana/provisioning/datasources").values()
tempo_source = datasources_of(datasources, "tempo")
tempo, tempo_container, port = service_target(tempo_source["url"], "http")
assert tempo["metadata"]["name"] == tempos[0], f"Grafana reads traces from {tempo['metadata']['name']}, not {tempos[0]}"
host, listen_port = http_listen(config_file(tempo, tempo_container))
assert listen_port == port and host in ANY_INTERFACE, f"{tempo_source['url']}: reaches port {port}, Tempo serves HTTP on {host}:{listen_port}"
prometheus_source = datasources_of(datasources, dashboard_type)
prometheus, prometheus_container, _ = service_target(prometheus_source["url"], "http")
providers = mounted_configmap(grafana, grafana_container, "/etc/grafana/provisioning/dashboards").values()
paths = [p["options"]["path"] for f in providers for p in f["providers"] if p["type"] == "file"]
assert paths, "no file dashboard provider"
for path in paths:
    mounts = [m for m in grafana_container["volumeMounts"] if m["mountPath"] == path]
    assert len(mounts) == 1, f"nothing mounted at the dashboard provider's {path}"
    volume = [v for v in grafana["spec"]["template"]["spec"]["volumes"] if v["name"] == mounts[0]["name"]][0]
    assert volume["configMap"]["name"] == "miroir-dashboards", f"{path}: not the miroir-dashboards ConfigMap"

# Prometheus scrapes every gateway and control plane: a DNS name that is a headless Service
# selecting their pods, on the port they serve metrics on.
scrape_configs = config_file(prometheus, prometheus_container)["scrape_configs"]
for workload, container in ((gateway, gw_container), (cp, cp_container)):
    what = workload["metadata"]["name"]
    metrics_port = host_port(env_of(container)["MIROIR_METRICS_LISTEN"]["value"])[1]
    assert any(p.get("name") == "metrics" and p["containerPort"] == metrics_port for p in container["ports"]), f"{what}: metrics port"
    scraped = False
    for job in scrape_configs:
        for sd in job.get("dns_sd_configs", []):
            for name in sd["names"]:
                service = find("Service", name)
                if service["spec"].get("clusterIP") == "None" and selected_workload(service) is workload:
                    assert sd.get("type", "SRV") == "A" and sd["port"] == metrics_port, f"{job['job_name']}: port"
                    assert job.get("metrics_path", "/metrics") == "/metrics", f"{job['job_name']}: path"
                    scraped = True
    assert scraped, f"Prometheus does not scrape {what}"

# One machine: the units export to the address tempo.yaml receives OTLP gRPC on, Tempo
# writes only under its StateDirectory (DynamicUser), and Grafana reads Tempo's
# http_listen_port. A URL's host must be the listening address itself (localhost may
# resolve to ::1 first), unless Tempo listens on every interface.
systemd = root / "deploy" / "systemd"


def reaches(url, listen):
    parts = urlsplit(url)
    host, port = listen
    local = parts.hostname in ("127.0.0.1", "localhost", "::1") if host in ANY_INTERFACE else parts.hostname == host
    return parts.scheme == "http" and local and parts.port == port


def unit_settings(path):
    settings = {}
    for line in path.read_text().splitlines():
        if line and line[0] not in "#;[" and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def unit_environment(settings):
    return dict(word.split("=", 1) for value in settings.get("Environment", []) for word in shlex.split(value))


local_tempo = yaml.safe_load((systemd / "tempo.yaml").read_text())
for unit in ("miroir-control-plane.service", "miroir-gateway.service"):
    url = unit_environment(unit_settings(systemd / unit)).get("OTEL_EXPORTER_OTLP_ENDPOINT")
    assert url, f"{unit}: no OTEL_EXPORTER_OTLP_ENDPOINT"
    listen = otlp_grpc_listen(local_tempo)
    assert reaches(url, listen), f"{unit}: {url}, but tempo.yaml receives OTLP gRPC on {listen[0]}:{listen[1]}"
tempo_unit = unit_settings(systemd / "tempo.service")
assert "-config.file=/etc/tempo/tempo.yaml" in tempo_unit["ExecStart"][0].split(), "tempo.service: config path"
state = f"/var/lib/{tempo_unit['StateDirectory'][0]}/"
for path in (local_tempo["storage"]["trace"]["wal"]["path"], local_tempo["storage"]["trace"]["local"]["path"]):
    assert path.startswith(state), f"tempo.yaml: {path} is outside tempo.service's {state}"
provisioning = root / "deploy" / "grafana" / "provisioning"
local_sources = [yaml.safe_load(p.read_text()) for p in sorted((provisioning / "datasources").glob("*.yaml"))]
local_tempo_url = datasources_of(local_sources, "tempo")["url"]
listen = http_listen(local_tempo)
assert reaches(local_tempo_url, listen), f"Tempo data source {local_tempo_url}, but tempo.yaml serves HTTP on {listen[0]}:{listen[1]}"
datasources_of(local_sources, dashboard_type)
local_providers = [yaml.safe_load(p.read_text()) for p in sorted((provisioning / "dashboards").glob("*.yaml"))]
assert [p["options"]["path"] for f in local_providers for p in f["providers"] if p["type"] == "file"], "no file provider"

print(f"{len(documents)} manifests: all checks passed")
