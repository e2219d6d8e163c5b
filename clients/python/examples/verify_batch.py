#!/usr/bin/env python3
"""Verifies a batch of tokens with jwtd and prints one line per token.

    python examples/verify_batch.py --target 127.0.0.1:50051 TOKEN [TOKEN ...]
    ... | python examples/verify_batch.py -        # one token a line on stdin

Exits 0 when every token is VALID, 1 when any is not, 2 when the call failed.
"""

import argparse
import sys

from jwtd_client import CallError, Client


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:50051", help="jwtd's address")
    parser.add_argument("--audience", action="append", default=[], help="require one of these (repeatable)")
    parser.add_argument("--issuer", default="", help="accept only this configured issuer")
    parser.add_argument("--scope", action="append", default=[], help="require this scope (repeatable)")
    parser.add_argument("--timeout", type=float, default=2.0, help="deadline in seconds")
    parser.add_argument("tokens", nargs="+", help="compact JWS tokens, or - for stdin")
    args = parser.parse_args()

    tokens = args.tokens
    if tokens == ["-"]:
        tokens = [line.strip() for line in sys.stdin if line.strip()]

    with Client(args.target, timeout=args.timeout) as jwtd:
        try:
            results = jwtd.verify(
                tokens, audiences=args.audience, issuer=args.issuer, required_scopes=args.scope
            )
        except CallError as error:
            print(f"call failed: {error.code.name}: {error.details}", file=sys.stderr)
            return 2

    for i, result in enumerate(results):
        if result.valid:
            assert result.claims is not None
            print(f"{i}: VALID sub={result.claims.subject!r} iss={result.claims.issuer} alg={result.claims.algorithm}")
        else:
            print(f"{i}: {result.status.removeprefix('STATUS_')}: {result.reason}")
    return 0 if all(r.valid for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
