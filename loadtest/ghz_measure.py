#!/usr/bin/env python3
"""Measures one scenario with ghz against a running jwtd, for the ghz column
of BENCHMARKS.md's service table (issue 14, item 8).

Usage: ghz_measure.py GHZ CONFIG ADDR CORPUS_DIR DURATION_S OUT_JSON

Runs loadtest/ghz/SCENARIO.json as committed, pointed at ADDR and at the
corpus's ghz data file (CORPUS_DIR/ghz-data.json), for DURATION_S seconds, with
the concurrency and connections jwtd-load uses (CONCURRENCY, CONNECTIONS
from the environment, default 16 and 4) so the two drivers offer the same
closed loop. ghz's own CPU (user + system, from the kernel's accounting of
the child) is divided by its calls: the driver's cost per call, which tells
the reader who saturates first on a shared 2-core machine. Writes a report
`jwtd-load table` reads (label `ghz`). At the end of a duration ghz cancels
the calls in flight (counted as Unavailable or Canceled); up to
twice concurrency of those are expected (ghz cuts each connection under
its calls), any other error fails the run.
"""

import json
import os
import resource
import subprocess
import sys
import tempfile


def main() -> int:
    ghz, config_path, addr, corpus, duration, out = sys.argv[1:7]
    scenario = os.path.splitext(os.path.basename(config_path))[0]
    with open(os.path.join(corpus, "corpus.json")) as f:
        batch = json.load(f)["batch"]
    with open(config_path) as f:
        config = json.load(f)
    concurrency = int(os.environ.get("CONCURRENCY", "16"))
    config.update(
        {
            "host": addr,
            "data-file": os.path.join(corpus, "ghz-data.json"),
            "duration": f"{duration}s",
            "concurrency": concurrency,
            "connections": int(os.environ.get("CONNECTIONS", "4")),
            "format": "json",
        }
    )
    config.pop("total", None)
    config.pop("rps", None)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
        run_config = f.name
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        done = subprocess.run(
            [ghz, "--config", run_config],
            capture_output=True,
            text=True,
            timeout=float(duration) + 120,
        )
    finally:
        os.unlink(run_config)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if not done.stdout.strip():
        print(f"ghz {scenario}: exit {done.returncode}: {done.stderr.strip()}", file=sys.stderr)
        return 1
    report = json.loads(done.stdout)
    codes = report.get("statusCodeDistribution") or {}
    ok = codes.get("OK", 0)
    cut = sum(n for code, n in codes.items() if code in ("Unavailable", "Canceled"))
    other = {code: n for code, n in codes.items() if code not in ("OK", "Unavailable", "Canceled")}
    if ok == 0 or other or cut > 2 * concurrency:
        print(
            f"ghz {scenario}: codes {codes}, errors {report.get('errorDistribution')}",
            file=sys.stderr,
        )
        return 1
    total_s = report["total"] / 1e9
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rps = ok / total_s
    result = {
        "scenario": scenario,
        "options": {"label": "ghz", "concurrency": concurrency, "durationS": float(duration)},
        "count": ok,
        "rps": rps,
        "tokensPerSec": rps * batch,
        "driverCpuUsPerCall": cpu_s / ok * 1e6,
        "latencyMs": {
            d["percentage"]: d["latency"] / 1e6 for d in report.get("latencyDistribution") or []
        },
    }
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(
        f"ghz {scenario}: {ok} calls, {rps:.0f} calls/s, {rps * batch:.0f} tokens/s, "
        f"driver {cpu_s / ok * 1e6:.0f} µs CPU per call",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
