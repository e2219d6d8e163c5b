"""jwtd's access control and overload answers, as the client handles them.

Against the guarded jwtd (conftest.py): callers named by the x-caller
header, only listed ones allowed, rates limited. Whether gRPC retried a call
is read from jwtd's own count of refusals on /metrics, not from timing: jwtd
counts a refusal before it answers, so every attempt of a call that has
returned is already counted.
"""

from __future__ import annotations

import time

import grpc
import jwt
import pytest

from jwtd_client import CallError, Client

from conftest import AUDIENCE, BULK_BATCH, CALLER_HEADER, ISSUER, KEYS, Guarded


def mint(**claims: object) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300, **claims}
    key = (KEYS / "rsa2048.pem").read_bytes()
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": "rsa2048"})


def as_caller(guarded: Guarded, caller: str) -> Client:
    return Client(guarded.address, timeout=10.0, metadata=[(CALLER_HEADER, caller)])


def test_over_the_rate_limit_is_retried_after_the_pushback(guarded: Guarded) -> None:
    token = mint()
    with as_caller(guarded, "limited") as limited:
        first = limited.verify([token, token])  # the whole burst of 2
        assert [r.status for r in first] == ["STATUS_VALID"] * 2
        before = guarded.refused("rate_limited", "limited")
        # The bucket is empty: jwtd refuses this call with a pushback of
        # about 1 s (2 tokens at 2 a second); gRPC waits that long and the
        # retry passes. Its own backoff could not wait that long in 4
        # attempts, so success here means the pushback was honoured.
        second = limited.verify([token, token])
    assert [r.status for r in second] == ["STATUS_VALID"] * 2
    assert guarded.refused("rate_limited", "limited") >= before + 1, "no refusal: the call was never retried"


def test_a_big_batch_over_the_rate_limit_is_retried_too(guarded: Guarded) -> None:
    # About 1.2 MB a call: retried only because the client raises gRPC's
    # retry buffer (RETRY_BUFFER_BYTES) above grpc-core's 256 KiB.
    token = mint(padding="x" * 3000)
    batch = [token] * BULK_BATCH
    with as_caller(guarded, "bulk") as bulk:
        assert len(bulk.verify(batch)) == BULK_BATCH  # the whole burst
        before = guarded.refused("rate_limited", "bulk")
        results = bulk.verify(batch)  # refused, pushback about 1 s, retried
    assert {r.status for r in results} == {"STATUS_VALID"}
    assert len(results) == BULK_BATCH
    assert guarded.refused("rate_limited", "bulk") >= before + 1, "no refusal: the call was never retried"


def test_a_caller_not_allowed_is_permission_denied_and_not_retried(guarded: Guarded) -> None:
    token = mint()
    with as_caller(guarded, "free") as free:  # listed: the header is what decides
        [result] = free.verify([token])
        assert result.status == "STATUS_VALID", result.reason
        before = guarded.refused("not_allowed", "other")
        with pytest.raises(CallError) as caught:  # a call's own header wins
            free.verify([token], metadata=[(CALLER_HEADER, "stranger")])
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "not allowed" in caught.value.details
    assert caught.value.pushback_ms is None
    assert guarded.refused("not_allowed", "other") == before + 1, "PERMISSION_DENIED was retried"


def test_a_batch_over_the_callers_burst_is_not_retried(guarded: Guarded) -> None:
    before = guarded.refused("over_burst", "limited")
    with as_caller(guarded, "limited") as limited:
        with pytest.raises(CallError) as caught:
            limited.verify([mint()] * 3)  # burst 2: this batch can never pass
    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.pushback_ms == -1
    assert "split the batch" in caught.value.details
    assert guarded.refused("over_burst", "limited") == before + 1, "retried despite a pushback of -1"
