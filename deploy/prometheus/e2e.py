"""End to end: Debian's Prometheus scrapes a running jwtd with
jwtd-rules.yaml loaded, while ghz drives traffic and the issuer's JWKS
endpoint goes down; then every query of the Grafana dashboard
(deploy/grafana/jwtd-dashboard.json) runs against that Prometheus.

    python3 deploy/prometheus/e2e.py JWTD_BIN GHZ_BIN [PROMETHEUS_BIN]

Steps, all on loopback, each bounded in time:
1. a JWKS server (this script) serves tests/data/keys/jwks.json;
2. jwtd loads it (refresh every 1-2 s, max_stale_seconds 3) and serves
   /metrics; Prometheus scrapes it every second and evaluates a copy of
   jwtd-rules.yaml whose `for:` durations are cut to 2 s;
3. ghz sends Verify calls with valid, expired and malformed tokens, and
   Check calls; the script waits until the recording rules have series
   for both methods and the memo (`jwtd:calls:rate5m`,
   `jwtd:failed_calls:ratio_rate5m`, `jwtd:memo_hits:ratio_rate15m`,
   `jwtd:keys_age_seconds`);
4. the JWKS server starts answering 500: after max_stale_seconds jwtd
   answers KEYS_UNAVAILABLE, and the script waits until Prometheus's
   JwtdKeysUnavailable alert is firing, and checks that no other alert
   fired on the healthy traffic before the outage;
5. the dashboard: every panel query (Grafana's `$__rate_interval` as 1m,
   `$instance` as all) must be accepted by Prometheus and return data, and
   every metric it names must be on the running jwtd's /metrics page (or,
   for `jwtd:` names, be a recording rule), so the dashboard cannot drift
   from the code. The config turns on what the dashboard shows: a
   revocation list (with a revoked jti and a bad line), a caller with a
   burst of 1 (refused `over_burst`), and an OTLP endpoint nobody listens
   on (span exports counted as errors).

Exits 0 when all of that happens, 1 with what was missing otherwise.
Needs Python 3.11+ only (stdlib).
"""

import http.server
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ISSUER = "https://e2e.jwtd.test"
AUDIENCE = "e2e-api"
STEP_TIMEOUT = 90  # seconds for each wait below


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Jwks(http.server.BaseHTTPRequestHandler):
    """Serves the test key set until `down` is set, then 500."""

    down = threading.Event()
    body = (ROOT / "tests/data/keys/jwks.json").read_bytes()

    def do_GET(self):  # noqa: N802 (the http.server name)
        if self.down.is_set():
            self.send_error(500, "outage")
            return
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def wait(what, check, timeout=STEP_TIMEOUT):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except OSError as e:  # not listening yet
            last = e
        time.sleep(0.5)
    sys.exit(f"e2e: timed out after {timeout} s waiting for {what} (last: {last})")


def query(prom, expr):
    url = f"http://{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)["data"]["result"]


def alerts(prom):
    with urllib.request.urlopen(f"http://{prom}/api/v1/alerts", timeout=5) as r:
        return json.load(r)["data"]["alerts"]


def check_dashboard(prom, metrics, rules):
    """Every panel query runs and returns data; every metric it names exists."""
    dashboard = json.loads((ROOT / "deploy/grafana/jwtd-dashboard.json").read_text())
    panels = [p for top in dashboard["panels"] for p in [top, *top.get("panels", [])]]
    exprs = [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]
    with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5) as r:
        exported = {re.sub(r"_(bucket|count|sum)$", "", line.split("{")[0].split(" ")[0])
                    for line in r.read().decode().splitlines() if line and not line.startswith("#")}
    recorded = set(re.findall(r"record: (\S+)", rules))
    problems = []
    for title, expr in exprs:
        for name in set(re.findall(r"\b((?:jwtd|process)_[a-z_]+|jwtd:[a-z0-9_:]+)", expr)):
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            if name not in recorded and base not in exported:
                problems.append(f"{title}: {name} is not on jwtd's /metrics")
        promql = expr.replace("$__rate_interval", "1m").replace("$instance", ".*")
        try:
            if not query(prom, promql):
                problems.append(f"{title}: no data for {promql}")
        except urllib.error.HTTPError as e:
            problems.append(f"{title}: Prometheus refused {promql}: {e.read().decode()[:200]}")
    if problems:
        sys.exit("e2e: dashboard:\n  " + "\n  ".join(problems))
    print(f"e2e: dashboard: {len(exprs)} queries of {len(panels)} panels run and return data; "
          f"every metric they name is exported")


def main():
    jwtd_bin, ghz = sys.argv[1], sys.argv[2]
    prometheus = sys.argv[3] if len(sys.argv) > 3 else shutil.which("prometheus") or "/usr/bin/prometheus"
    work = Path(tempfile.mkdtemp(prefix="jwtd-e2e-"))
    procs = []
    try:
        jwks = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
        threading.Thread(target=jwks.serve_forever, daemon=True).start()
        grpc, metrics, prom = free_port(), free_port(), free_port()

        config = work / "jwtd.toml"
        config.write_text(f"""
listen = "127.0.0.1:{grpc}"
metrics_listen = "127.0.0.1:{metrics}"
[server]
drain_seconds = 0
[[issuers]]
issuer = "{ISSUER}"
jwks_uri = "http://127.0.0.1:{jwks.server_address[1]}/jwks.json"
allow_insecure_http = true
audiences = ["{AUDIENCE}"]
refresh_seconds = 1
min_refresh_seconds = 1
max_refresh_seconds = 2
max_stale_seconds = 3
[revocation]
file = "revoked.jsonl"
refresh_seconds = 1
[callers]
identity = "header:x-caller"
[[callers.caller]]
id = "greedy"
tokens_per_second = 1
burst = 1
[telemetry]
otlp_endpoint = "http://127.0.0.1:{free_port()}"
""")
        (work / "revoked.jsonl").write_text(
            json.dumps({"iss": ISSUER, "jti": "gone", "exp": int(time.time()) + 3600}) + "\nnot json\n")
        log = open(work / "jwtd.log", "w")
        procs.append(subprocess.Popen([jwtd_bin, "--config", str(config)], stderr=log))

        # The rules as shipped, with every `for:` cut to 2 s so the test
        # does not wait minutes; the expressions are unchanged.
        rules = (ROOT / "deploy/prometheus/jwtd-rules.yaml").read_text()
        (work / "rules.yaml").write_text(re.sub(r"for: \d+m", "for: 2s", rules))
        (work / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yaml]
scrape_configs:
  - job_name: jwtd
    static_configs:
      - targets: ["127.0.0.1:{metrics}"]
""")
        prom_addr = f"127.0.0.1:{prom}"
        procs.append(subprocess.Popen(
            [prometheus, f"--config.file={work / 'prometheus.yml'}",
             f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address={prom_addr}"],
            stdout=subprocess.DEVNULL, stderr=open(work / "prometheus.log", "w")))

        wait("jwtd ready", lambda: "jwtd.v1.VerifierService is SERVING" in (work / "jwtd.log").read_text())

        def mint(*extra):
            return subprocess.run(
                [jwtd_bin, "mint", "--key", str(ROOT / "tests/data/keys/rsa2048.pem"), "--kid", "rsa2048",
                 "--iss", ISSUER, "--aud", AUDIENCE, "--sub", "alice", *extra],
                check=True, capture_output=True, text=True).stdout.strip()

        valid, expired = mint(), mint("--ttl", "-3600")
        revoked = mint("--claim", 'jti="gone"')
        verify = json.dumps({"tokens": [valid, expired, "not-a-token", valid, revoked]})
        check = json.dumps({"attributes": {"request": {"http": {"headers": {"authorization": f"Bearer {valid}"}}}}})

        def drive(seconds):
            for call, data, caller in (("jwtd.v1.VerifierService/Verify", verify, "web"),
                                       ("envoy.service.auth.v3.Authorization/Check", check, "mesh"),
                                       ("jwtd.v1.VerifierService/Verify", verify, "greedy")):
                subprocess.run([ghz, "--insecure", "--call", call, "-d", data, "--rps", "50",
                                "-m", json.dumps({"x-caller": caller}),
                                "-z", f"{seconds}s", f"127.0.0.1:{grpc}"],
                               check=True, capture_output=True, timeout=seconds + 30)

        start = time.monotonic()
        for expr, labels in (
            ('jwtd:calls:rate5m{method="jwtd.v1.VerifierService/Verify"}', 1),
            ('jwtd:calls:rate5m{method="envoy.service.auth.v3.Authorization/Check"}', 1),
            ("jwtd:failed_calls:ratio_rate5m", 2),
            ("jwtd:memo_hits:ratio_rate15m", 1),
            (f'jwtd:keys_age_seconds{{issuer="{ISSUER}"}}', 1),
        ):
            def present(expr=expr, labels=labels):
                drive(2)
                result = query(prom_addr, expr)
                return len(result) >= labels and result
            print(f"e2e: {expr} = {[r['value'][1] for r in wait(expr, present)]}")
        healthy = [a["labels"]["alertname"] for a in alerts(prom_addr) if a["state"] == "firing"]
        if healthy:
            sys.exit(f"e2e: alerts firing on healthy traffic: {healthy}")
        print(f"e2e: recording rules have series, no alert fired ({time.monotonic() - start:.0f} s)")

        Jwks.down.set()
        outage = time.monotonic()

        def firing():
            drive(2)
            return [a for a in alerts(prom_addr)
                    if a["labels"]["alertname"] == "JwtdKeysUnavailable" and a["state"] == "firing"]
        fired = wait("JwtdKeysUnavailable firing", firing)
        print(f"e2e: JwtdKeysUnavailable firing {time.monotonic() - outage:.0f} s after the JWKS "
              f"endpoint went down: {fired[0]['annotations']['summary']}")
        check_dashboard(prom_addr, f"127.0.0.1:{metrics}", rules)
    except SystemExit as failure:
        if failure.code not in (0, None):
            for name in ("jwtd.log", "prometheus.log"):
                path = work / name
                if path.exists():
                    print(f"--- the end of {name}:", *path.read_text().splitlines()[-30:], sep="\n")
        raise
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
