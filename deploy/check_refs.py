"""Cross-checks between the deploy/ files that no schema sees.

Each file is valid alone (kubernetes-validate, check-jsonschema); this checks
that they agree: ports, the Service's name, the health service names, the
extension provider's name, and terminationGracePeriodSeconds against the
config's drain; the alert rules against the runbook and the metric names in
the code; and the decision records the code names against docs/adr/. Run by .ci/run with the deploy venv (PyYAML); prints one line
per failed check and exits 1 if any.
"""

import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent
READINESS = "jwtd.v1.VerifierService"
IN_FLIGHT_LIMIT = 10  # seconds jwtd waits for in-flight calls after the drain

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)


def docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


k8s = ROOT / "kubernetes"
kustomization = docs(k8s / "kustomization.yaml")[0]
namespace = kustomization["namespace"]
objects = [d for r in kustomization["resources"] for d in docs(k8s / r)]
by_kind = {}
for o in objects:
    by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
config = tomllib.loads((k8s / "jwtd.toml").read_text())

deployment = by_kind["Deployment"]["jwtd"]
pod = deployment["spec"]["template"]["spec"]
container = next(c for c in pod["containers"] if c["name"] == "jwtd")
ports = {p["name"]: p["containerPort"] for p in container["ports"]}
check(ports["grpc"] == port_of(config["listen"]), "containerPort grpc != jwtd.toml listen")
check(ports["metrics"] == port_of(config["metrics_listen"]),
      "containerPort metrics != jwtd.toml metrics_listen")
check(container["readinessProbe"]["grpc"] == {"port": ports["grpc"], "service": READINESS},
      f"readinessProbe must be grpc on {ports['grpc']} with service {READINESS}")
check(container["livenessProbe"]["grpc"] == {"port": ports["grpc"], "service": ""},
      f"livenessProbe must be grpc on {ports['grpc']} with service \"\"")
drain = config.get("server", {}).get("drain_seconds", 5)
check(pod["terminationGracePeriodSeconds"] > drain + IN_FLIGHT_LIMIT,
      f"terminationGracePeriodSeconds must exceed drain_seconds ({drain}) + {IN_FLIGHT_LIMIT}")
check("--config" in container["args"]
      and container["args"][container["args"].index("--config") + 1] == "/etc/jwtd/jwtd.toml",
      "the container must read /etc/jwtd/jwtd.toml")
mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/etc/jwtd")
volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
check(volume["configMap"]["name"] in [g["name"] for g in kustomization["configMapGenerator"]],
      "the config volume must be the generated ConfigMap")

service = by_kind["Service"]["jwtd"]
grpc_port = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
check(grpc_port.get("appProtocol") == "grpc", "Service port grpc needs appProtocol: grpc")
check(grpc_port["targetPort"] in ("grpc", ports["grpc"]), "Service grpc targetPort")
host = f"jwtd.{namespace}.svc.cluster.local"
for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget"):
    check("jwtd" in by_kind.get(kind, {}), f"missing {kind} jwtd")

istio = {d["kind"]: d for f in sorted((ROOT / "istio").glob("*.yaml")) for d in docs(f)}
providers = {p["name"]: p for p in istio["IstioOperator"]["spec"]["meshConfig"]["extensionProviders"]}
policy = istio["AuthorizationPolicy"]["spec"]
check(policy["provider"]["name"] in providers, "AuthorizationPolicy names no mesh provider")
grpc = providers.get(policy["provider"]["name"], {}).get("envoyExtAuthzGrpc", {})
check(grpc.get("service") == host and grpc.get("port") == grpc_port["port"],
      f"extension provider must point at {host}:{grpc_port['port']}")
check(grpc.get("failOpen") is False, "extension provider must not fail open")
rule = istio["DestinationRule"]
check(rule["spec"]["host"] == host and rule["metadata"]["namespace"] == namespace,
      f"DestinationRule must be for {host} in {namespace}")

envoy = docs(ROOT / "envoy" / "envoy.yaml")[0]["static_resources"]
clusters = {c["name"]: c for c in envoy["clusters"]}
hcm = envoy["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
authz = next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.ext_authz")
check(hcm["http_filters"][-1]["name"] == "envoy.filters.http.router", "router must be the last filter")
jwtd_cluster = clusters.get(authz["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"])
check(jwtd_cluster is not None, "ext_authz names no cluster")
if jwtd_cluster:
    address = jwtd_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    name = address["socket_address"]["address"].split(".")[0]
    check(name in by_kind["Service"] and address["socket_address"]["port_value"] == ports["grpc"],
          "envoy's jwtd cluster must point at a jwtd Service's grpc port")
    check(jwtd_cluster["health_checks"][0]["grpc_health_check"]["service_name"] == READINESS,
          f"envoy's health check must ask for {READINESS}")
    check("http2_protocol_options" in jwtd_cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["explicit_http_config"],
          "envoy's jwtd cluster must speak HTTP/2")

# The alert rules against the runbook and the code: every alert carries
# summary, description and a runbook_url whose heading exists in
# docs/runbook.md, and every jwtd_ metric a rule reads is one the code
# exports (a name in src/observability/telemetry.rs; histograms by their
# _bucket/_count/_sum series).
rules = docs(ROOT / "prometheus" / "jwtd-rules.yaml")[0]
runbook = (ROOT.parent / "docs" / "runbook.md").read_text()
anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
           for h in re.findall(r"^#+ (.+)$", runbook, re.M)}
exported = set(re.findall(r'"(jwtd_[a-z_]+)"',
                          (ROOT.parent / "src" / "observability" / "telemetry.rs").read_text()))
alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
check(len(alerts) >= 10, "jwtd-rules.yaml: expected the SLO and symptom alerts")
for rule in rules["groups"][0]["rules"] + alerts:
    for name in set(re.findall(r"\b(jwtd_[a-z_]+)", rule["expr"])):
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        check(name in exported or base in exported, f"jwtd-rules.yaml reads {name}, which jwtd does not export")
for alert in alerts:
    notes = alert.get("annotations", {})
    check(notes.get("summary") and notes.get("description"), f"{alert['alert']}: summary and description")
    url = notes.get("runbook_url", "")
    check(url == f"docs/runbook.md#{alert['alert'].lower()}" and alert["alert"].lower() in anchors,
          f"{alert['alert']}: runbook_url must be docs/runbook.md#{alert['alert'].lower()}, a heading there")

# Decision records named in the code exist.
for source in sorted((ROOT.parent / "src").rglob("*.rs")) + [ROOT.parent / "build.rs"]:
    for adr in re.findall(r"docs/adr/[0-9a-z-]+\.md", source.read_text()):
        check((ROOT.parent / adr).is_file(), f"{source.relative_to(ROOT.parent)} names {adr}, which does not exist")

for f in failures:
    print(f"deploy/check_refs.py: {f}")
print(f"deploy/check_refs.py: {len(failures)} failed" if failures else "deploy/check_refs.py: ok")
sys.exit(1 if failures else 0)
