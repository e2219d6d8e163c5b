"""jwtd against tokens minted by PyJWT (with `cryptography`), over real gRPC.

PyJWT is an implementation independent of jwtd: these tests check that the
two agree on what is VALID and on the reason code of each rejection.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from jwtd_client import CallError, Client

from conftest import AUDIENCE, HMAC_ISSUER, ISSUER, KEYS, MAX_BATCH, SLOW_ISSUER, TYPED_ISSUER

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "verify_batch.py"


def pem(name: str) -> bytes:
    return (KEYS / f"{name}.pem").read_bytes()


def hmac_secret() -> bytes:
    jwk = json.loads((KEYS / "jwks-hmac.json").read_text())["keys"][0]
    return base64.urlsafe_b64decode(jwk["k"] + "=" * (-len(jwk["k"]) % 4))


def mint(
    key: Any = None,
    alg: str = "RS256",
    kid: str | None = "rsa2048",
    *,
    iss: str = ISSUER,
    aud: str = AUDIENCE,
    exp_in: int = 300,
    typ: str | None = None,
    **claims: Any,
) -> str:
    """Signs a token with PyJWT. ``typ`` replaces PyJWT's own header typ ("JWT")."""
    now = int(time.time())
    payload = {"iss": iss, "aud": aud, "sub": "alice", "iat": now, "exp": now + exp_in, **claims}
    headers: dict[str, Any] = {} if kid is None else {"kid": kid}
    if typ is not None:
        headers["typ"] = typ
    return jwt.encode(payload, pem("rsa2048") if key is None else key, algorithm=alg, headers=headers or None)


@pytest.mark.parametrize(
    "key_name,alg",
    [
        ("rsa2048", "RS256"),
        ("rsa3072", "RS512"),
        ("rsa2048", "PS256"),
        ("p256", "ES256"),
        ("p384", "ES384"),
        ("p521", "ES512"),
        ("ed25519", "EdDSA"),
    ],
)
def test_valid_public_key_tokens(client: Client, key_name: str, alg: str) -> None:
    token = mint(pem(key_name), alg, kid=key_name, scope="read write")
    [result] = client.verify([token])
    assert result.valid, (result.status, result.reason)
    assert result.status == "STATUS_VALID"
    assert result.claims is not None
    assert result.claims.issuer == ISSUER
    assert result.claims.subject == "alice"
    assert result.claims.audiences == (AUDIENCE,)
    assert result.claims.key_id == key_name
    assert result.claims.algorithm == alg
    assert result.claims.payload()["scope"] == "read write"
    assert result.claims.payload_json == base64.urlsafe_b64decode(token.split(".")[1] + "==")


def test_valid_hmac_token(client: Client) -> None:
    token = mint(hmac_secret(), "HS256", kid="hs", iss=HMAC_ISSUER)
    [result] = client.verify([token])
    assert result.status == "STATUS_VALID", result.reason
    assert result.claims is not None and result.claims.algorithm == "HS256"


def test_valid_without_kid(client: Client) -> None:
    [result] = client.verify([mint(pem("p256"), "ES256", kid=None)])
    assert result.status == "STATUS_VALID", result.reason
    assert result.claims is not None and result.claims.key_id == ""


def test_expired(client: Client) -> None:
    [result] = client.verify([mint(exp_in=-3600)])
    assert result.status == "STATUS_EXPIRED"
    assert result.reason
    assert result.claims is None


def test_wrong_audience(client: Client) -> None:
    [result] = client.verify([mint(aud="billing-api")])
    assert result.status == "STATUS_AUDIENCE_MISMATCH"
    assert result.reason


def test_requested_audience_narrows(client: Client) -> None:
    token = mint()
    [ok] = client.verify([token], audiences=[AUDIENCE])
    [narrowed] = client.verify([token], audiences=["billing-api"])
    assert ok.status == "STATUS_VALID", ok.reason
    assert narrowed.status == "STATUS_AUDIENCE_MISMATCH"


@pytest.mark.parametrize(
    "grant",
    [{"scope": "read write"}, {"scp": ["read", "write"]}],
    ids=["scope string", "scp array"],
)
def test_required_scopes(client: Client, grant: dict[str, Any]) -> None:
    token = mint(**grant)
    [read] = client.verify([token], required_scopes=["read"])
    assert read.status == "STATUS_VALID", read.reason
    [both] = client.verify([token], required_scopes=["read", "write"])
    assert both.status == "STATUS_VALID", both.reason
    [admin] = client.verify([token], required_scopes=["admin"])
    assert admin.status == "STATUS_INSUFFICIENT_SCOPE"
    assert not admin.valid and admin.claims is None
    assert "admin" in admin.reason, admin.reason
    [some] = client.verify([token], required_scopes=["read", "admin"])
    assert some.status == "STATUS_INSUFFICIENT_SCOPE"
    assert "admin" in some.reason and "read" not in some.reason, some.reason


def test_required_scope_with_whitespace_is_a_call_error(client: Client) -> None:
    with pytest.raises(CallError) as caught:
        client.verify([mint(scope="read write")], required_scopes=["read write"])
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "required_scopes[0]" in caught.value.details


def test_issuer_types_reject_other_token_types(client: Client) -> None:
    jwt_typ = mint(iss=TYPED_ISSUER)  # PyJWT's default header typ is "JWT"
    assert jwt.get_unverified_header(jwt_typ)["typ"] == "JWT"
    [rejected] = client.verify([jwt_typ])
    assert rejected.status == "STATUS_TYPE_NOT_ALLOWED"
    assert "JWT" in rejected.reason, rejected.reason
    [access] = client.verify([mint(iss=TYPED_ISSUER, typ="at+jwt")])
    assert access.status == "STATUS_VALID", access.reason
    # An issuer without `types` accepts either.
    untyped = client.verify([mint(typ="at+jwt"), mint()])
    assert [r.status for r in untyped] == ["STATUS_VALID"] * 2, [r.reason for r in untyped]


def test_status_names_cover_the_proto() -> None:
    from jwtd_client import _status_name

    assert [_status_name(n) for n in (12, 14, 15, 16)] == [
        "STATUS_REVOKED",
        "STATUS_TYPE_NOT_ALLOWED",
        "STATUS_INSUFFICIENT_SCOPE",
        "STATUS_CLIENT_NOT_ALLOWED",
    ]
    assert _status_name(999) == "STATUS_999"


def test_wrong_issuer(client: Client) -> None:
    [result] = client.verify([mint(iss="https://evil.test")])
    assert result.status == "STATUS_ISSUER_NOT_TRUSTED"
    assert result.reason


def test_issuer_filter(client: Client) -> None:
    [result] = client.verify([mint()], issuer=HMAC_ISSUER)
    assert result.status == "STATUS_ISSUER_NOT_TRUSTED"


def test_bad_signature_other_key(client: Client) -> None:
    # Signed by rsa3072 but naming rsa2048's kid.
    [result] = client.verify([mint(pem("rsa3072"), "RS256", kid="rsa2048")])
    assert result.status == "STATUS_BAD_SIGNATURE"
    assert result.reason


def test_bad_signature_altered_payload(client: Client) -> None:
    header, _, signature = mint().split(".")
    now = int(time.time())
    forged = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": now + 300}
    body = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    [result] = client.verify([f"{header}.{body}.{signature}"])
    assert result.status == "STATUS_BAD_SIGNATURE"


def test_unknown_kid(client: Client) -> None:
    [result] = client.verify([mint(kid="rotated-away")])
    assert result.status == "STATUS_UNKNOWN_KEY"
    assert result.reason


def test_alg_none(client: Client) -> None:
    token = mint("", "none")  # PyJWT wants an empty key for "none"
    assert token.endswith("."), token  # PyJWT's unsecured JWS: empty signature
    [result] = client.verify([token])
    assert result.status == "STATUS_UNSUPPORTED_ALGORITHM"
    assert result.reason


def test_batch_results_keep_request_order(client: Client) -> None:
    tokens = [mint(), mint(exp_in=-3600), "not-a-token", mint(pem("p256"), "ES256", kid="p256")]
    statuses = [r.status for r in client.verify(tokens)]
    assert statuses == ["STATUS_VALID", "STATUS_EXPIRED", "STATUS_MALFORMED", "STATUS_VALID"]


def test_empty_batch(client: Client) -> None:
    assert client.verify([]) == []


def test_batch_over_the_limit_is_a_call_error(client: Client) -> None:
    token = mint()
    assert len(client.verify([token] * MAX_BATCH)) == MAX_BATCH
    with pytest.raises(CallError) as caught:
        client.verify([token] * (MAX_BATCH + 1))
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"limit of {MAX_BATCH}" in caught.value.details


def test_unconfigured_issuer_filter_is_a_call_error(client: Client) -> None:
    with pytest.raises(CallError) as caught:
        client.verify([mint()], issuer="https://nobody.test")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_deadline_exceeded(client: Client) -> None:
    # The slow issuer's JWKS server hangs on every fetch after the first, so
    # an unknown kid makes jwtd wait (kid_miss_wait_ms = 30 s) for a refresh
    # that never comes; the call's 0.5 s deadline passes first.
    [loaded] = client.verify([mint(iss=SLOW_ISSUER)])
    assert loaded.status == "STATUS_VALID", loaded.reason
    with pytest.raises(CallError) as caught:
        client.verify([mint(iss=SLOW_ISSUER, kid="not-yet-published")], timeout=0.5)
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    # The channel is still good for the next call.
    [after] = client.verify([mint()])
    assert after.status == "STATUS_VALID", after.reason


def test_unreachable_jwtd_is_unavailable() -> None:
    import socket

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Client(f"127.0.0.1:{port}", timeout=20.0) as unreachable:
        with pytest.raises(CallError) as caught:
            unreachable.verify([mint()])
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE


def test_reflection_lists_the_services(jwtd_address: str) -> None:
    with grpc.insecure_channel(jwtd_address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {"jwtd.v1.VerifierService", "grpc.health.v1.Health"} <= services
        service = DescriptorPool(database).FindServiceByName("jwtd.v1.VerifierService")
        verify = service.methods_by_name["Verify"]
        assert verify.input_type.full_name == "jwtd.v1.VerifyRequest"
        assert verify.output_type.full_name == "jwtd.v1.VerifyResponse"


def test_example_prints_each_reason(jwtd_address: str) -> None:
    tokens = [mint(), mint(exp_in=-3600), mint(kid="rotated-away")]
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), "--target", jwtd_address, *tokens],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("0: VALID sub='alice'"), lines
    assert lines[1].startswith("1: EXPIRED: "), lines
    assert lines[2].startswith("2: UNKNOWN_KEY: "), lines


def test_example_passes_required_scopes(jwtd_address: str) -> None:
    tokens = [mint(scope="read write"), mint(scope="read")]
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), "--target", jwtd_address, "--scope", "write", *tokens],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("0: VALID sub='alice'"), lines
    assert lines[1] == "1: INSUFFICIENT_SCOPE: missing scope write", lines
