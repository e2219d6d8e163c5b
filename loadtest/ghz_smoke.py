#!/usr/bin/env python3
"""Runs one loadtest/ghz/SCENARIO.json with ghz against a running jwtd for a
few seconds and fails unless every call succeeded.

Usage: ghz_smoke.py GHZ CONFIG ADDR DATA_FILE [CALLS]

The config is used as committed, except for what points it at this run:
the host (ADDR), the data file, a number of calls (CALLS, 1000) instead of
a duration (at the end of a duration ghz closes its connections under the
calls still in flight and counts them as UNAVAILABLE), no skipped warm-up,
JSON output and, for `overload`, a rate a debug build answers (the shedding
itself is checked by `jwtd-load run --allow-shed`; here ghz checks that
jwtd speaks to it). A shed call (RESOURCE_EXHAUSTED) is the only error
accepted, and only for `overload`.
"""

import json
import os
import subprocess
import sys
import tempfile


def main() -> int:
    ghz, config_path, addr, data_file = sys.argv[1:5]
    calls = int(sys.argv[5]) if len(sys.argv) > 5 else 1000
    scenario = os.path.splitext(os.path.basename(config_path))[0]
    with open(config_path) as f:
        config = json.load(f)
    config.pop("duration", None)
    config.update(
        {
            "host": addr,
            "data-file": data_file,
            "total": calls,
            "skipFirst": 0,
            "format": "json",
        }
    )
    allowed = {"OK"}
    if scenario == "overload":
        config["rps"] = 200
        config["concurrency"] = 32
        allowed.add("ResourceExhausted")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
        run_config = f.name
    try:
        done = subprocess.run(
            [ghz, "--config", run_config],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        os.unlink(run_config)
    if done.returncode != 0 and not done.stdout.strip():
        print(f"ghz {scenario}: exit {done.returncode}: {done.stderr.strip()}", file=sys.stderr)
        return 1
    report = json.loads(done.stdout)
    codes = report.get("statusCodeDistribution") or {}
    errors = report.get("errorDistribution") or {}
    count = report.get("count", 0)
    unexpected = {code: n for code, n in codes.items() if code not in allowed}
    print(
        f"ghz {scenario}: {count} calls, {report.get('rps', 0):.0f} calls/s, "
        f"codes {json.dumps(codes, sort_keys=True)}"
    )
    if count == 0 or codes.get("OK", 0) == 0:
        print(f"ghz {scenario}: no successful call", file=sys.stderr)
        return 1
    if unexpected:
        print(f"ghz {scenario}: unexpected codes {unexpected}; errors {errors}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
