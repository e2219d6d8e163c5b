"""Starts the real jwtd binary for the suite, on an ephemeral port.

JWTD_BIN names the binary (default: <repo>/target/release/jwtd). The config
is written to a temp folder; its issuers read the repository's test key sets
(tests/data/keys) and each names the audience its tokens carry (an issuer
with neither ``audiences`` nor ``allow_any_audience = true`` rejects every
token unless the call names audiences); TYPED_ISSUER accepts only access
tokens (header ``typ: at+jwt``); and one issuer fetches its keys from a JWKS
server run by this suite, which answers the first fetch and then hangs, so that a call
waiting on an unknown-kid refresh outlives its deadline. The suite starts
once health reports jwtd.v1.VerifierService SERVING (every issuer loaded).

A second jwtd (the ``guarded`` fixture) only lets listed callers in, names
them by the ``x-caller`` header and limits their rates (GUARDED_CALLERS); it
serves /metrics on a free loopback port, where the tests read how many calls
it refused, and why.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import queue
import re
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from jwtd_client import Client

REPO = Path(__file__).resolve().parents[3]
KEYS = REPO / "tests" / "data" / "keys"

ISSUER = "https://issuer.test"  # public keys: tests/data/keys/jwks.json
HMAC_ISSUER = "https://hmac.test"  # one oct secret: jwks-hmac.json
SLOW_ISSUER = "https://slow.test"  # keys from the suite's hanging JWKS server
TYPED_ISSUER = "https://typed.test"  # jwks.json again, accepting only typ "at+jwt"
AUDIENCE = "orders-api"
MAX_BATCH = 8

CALLER_HEADER = "x-caller"
#: The guarded jwtd's callers. "limited" refills 2 tokens a second, so a
#: 2-token call right after another waits about 1 s: longer than gRPC's
#: own backoff could ever wait over 4 attempts (0.1 + 0.2 + 0.4 s at most),
#: so only a retry that honours jwtd's pushback gets through. "bulk" takes
#: batches over 1 MiB (BULK_BATCH tokens of about 4 KiB), past grpc-core's
#: 256 KiB and grpc-js's 1 MiB default retry buffers.
BULK_BATCH = 300
GUARDED_CALLERS = f"""
[callers]
identity = "header:{CALLER_HEADER}"
allow_unlisted = false

[[callers.caller]]
id = "limited"
tokens_per_second = 2
burst = 2

[[callers.caller]]
id = "bulk"
tokens_per_second = {BULK_BATCH}
burst = {BULK_BATCH}

[[callers.caller]]
id = "free"
"""


class HangingJwks:
    """Serves jwks.json once, then holds every later request until closed."""

    def __init__(self) -> None:
        body = (KEYS / "jwks.json").read_bytes()
        served = threading.Event()
        self.release = threading.Event()
        release = self.release

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if served.is_set():
                    release.wait()
                    self.send_error(503)
                    return
                served.set()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def write_config(directory: Path, jwks_url: str) -> Path:
    config = f"""
listen = "127.0.0.1:0"
metrics_listen = ""

[limits]
max_batch = {MAX_BATCH}

[fetch]
timeout_seconds = 120

[[issuers]]
issuer = "{ISSUER}"
jwks_file = {json.dumps(str(KEYS / "jwks.json"))}
audiences = ["{AUDIENCE}"]

[[issuers]]
issuer = "{HMAC_ISSUER}"
jwks_file = {json.dumps(str(KEYS / "jwks-hmac.json"))}
audiences = ["{AUDIENCE}"]

[[issuers]]
issuer = "{SLOW_ISSUER}"
jwks_uri = "{jwks_url}"
allow_insecure_http = true
kid_miss_wait_ms = 30000
audiences = ["{AUDIENCE}"]

[[issuers]]
issuer = "{TYPED_ISSUER}"
jwks_file = {json.dumps(str(KEYS / "jwks.json"))}
audiences = ["{AUDIENCE}"]
types = ["at+jwt"]
"""
    path = directory / "jwtd.toml"
    path.write_text(config)
    return path


def write_guarded_config(directory: Path, metrics_port: int) -> Path:
    config = f"""
listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:{metrics_port}"

[limits]
max_batch = {2 * BULK_BATCH}

[[issuers]]
issuer = "{ISSUER}"
jwks_file = {json.dumps(str(KEYS / "jwks.json"))}
audiences = ["{AUDIENCE}"]
{GUARDED_CALLERS}"""
    path = directory / "jwtd.toml"
    path.write_text(config)
    return path


def free_loopback_port() -> int:
    """A port nothing listens on now (jwtd cannot report the port it took
    for metrics_listen = ":0", so the suite picks one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def jwtd_binary() -> Path:
    binary = Path(os.environ.get("JWTD_BIN", REPO / "target" / "release" / "jwtd"))
    if not binary.is_file():
        pytest.exit(f"no jwtd binary at {binary}: build it (cargo build --release) or set JWTD_BIN", returncode=2)
    return binary


def wait_until_serving(address: str, log: list[str]) -> None:
    """Waits for health to say jwtd.v1.VerifierService is SERVING: the ready
    line comes before keys fetched from a URL are loaded."""
    request = health_pb2.HealthCheckRequest(service="jwtd.v1.VerifierService")
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(300):
            answer = health.Check(request, timeout=5)
            if answer.status == health_pb2.HealthCheckResponse.SERVING:
                return
            time.sleep(0.1)
    pytest.fail("jwtd.v1.VerifierService not SERVING after 30 s:\n" + "".join(log))


@contextlib.contextmanager
def running_jwtd(config: Path) -> Iterator[str]:
    """Runs jwtd on ``config``; yields its gRPC address once it is SERVING."""
    proc = subprocess.Popen(
        [str(jwtd_binary()), "--log-format", "json", "--config", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: "queue.Queue[str | None]" = queue.Queue()
    log: list[str] = []

    def pump() -> None:  # keeps reading stderr so jwtd never blocks on it
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    address = None
    try:
        while address is None:
            try:
                line = lines.get(timeout=30)
            except queue.Empty:
                pytest.fail("jwtd printed no ready line in 30 s:\n" + "".join(log))
            if line is None:
                pytest.fail(f"jwtd exited with {proc.wait()}:\n" + "".join(log))
            try:
                event = json.loads(line)
            except ValueError:
                continue
            fields = event.get("fields", {})
            if str(fields.get("message", "")).startswith("jwtd ready"):
                address = fields["addr"]
        wait_until_serving(address, log)
        yield address
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def jwtd_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    jwks = HangingJwks()
    try:
        config = write_config(tmp_path_factory.mktemp("jwtd"), jwks.url)
        with running_jwtd(config) as address:
            yield address
    finally:
        jwks.close()


_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Guarded:
    """The guarded jwtd: its gRPC address and its /metrics URL."""

    address: str
    metrics_url: str

    def refused(self, reason: str, caller: str) -> int:
        """jwtd_refused_calls_total for Verify with this reason and caller
        label (0 before the first such refusal: the series does not exist)."""
        want = {"method": "jwtd.v1.VerifierService/Verify", "reason": reason, "caller": caller}
        with urllib.request.urlopen(self.metrics_url, timeout=10) as answer:
            text = answer.read().decode()
        total = 0
        for line in text.splitlines():
            if not line.startswith("jwtd_refused_calls_total{"):
                continue
            labels, _, value = line[len("jwtd_refused_calls_total{") :].rpartition("} ")
            if dict(_LABEL.findall(labels)) == want:
                total += int(float(value))
        return total


@pytest.fixture(scope="session")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    port = free_loopback_port()
    config = write_guarded_config(tmp_path_factory.mktemp("jwtd-guarded"), port)
    with running_jwtd(config) as address:
        yield Guarded(address, f"http://127.0.0.1:{port}/metrics")


@pytest.fixture(scope="session")
def client(jwtd_address: str) -> Iterator[Client]:
    with Client(jwtd_address, timeout=10.0) as c:
        yield c
