#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/corpus/ (see fuzz/corpus/README.md) from
the repository's fixtures. Signs its tokens with the `cryptography` package,
as tests/data/keys/make_jwks.py does: an implementation independent of jwtd.

Run from anywhere, when the fixtures or the targets change:
    python3 fuzz/make_corpus.py
It rewrites json/, verify/, jwks/, discovery/ and config/ whole and leaves
ext_authz_request/ alone (those seeds come from the fuzzer: see the README).
ECDSA signatures are randomised, so those seeds differ at every run.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import shutil

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

FUZZ = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(FUZZ)
CORPUS = os.path.join(FUZZ, "corpus")
KEYS = os.path.join(ROOT, "tests", "data", "keys")
WYCHEPROOF = os.path.join(ROOT, "tests", "data", "wycheproof")

# The verify target checks at 1 700 000 000: these tokens expired before.
EXPIRED = 1_600_000_000


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def reset(target: str) -> str:
    path = os.path.join(CORPUS, target)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def write(folder: str, name: str, data) -> None:
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def load(name: str):
    with open(os.path.join(WYCHEPROOF, name)) as f:
        return json.load(f)


# ---- verify: compact JWS strings ------------------------------------------

HASHES = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}


def sign(alg: str, key, message: bytes) -> bytes:
    bits = alg[2:]
    if alg.startswith("HS"):
        return hmac.new(key, message, getattr(hashlib, "sha" + bits)).digest()
    if alg.startswith("RS"):
        return key.sign(message, padding.PKCS1v15(), HASHES[bits])
    if alg.startswith("PS"):
        pss = padding.PSS(mgf=padding.MGF1(HASHES[bits]), salt_length=HASHES[bits].digest_size)
        return key.sign(message, pss, HASHES[bits])
    if alg.startswith("ES"):
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(HASHES[bits])))
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if alg == "EdDSA":
        return key.sign(message)
    raise ValueError(alg)


def token(alg: str, key, header: dict, claims: dict) -> str:
    signing_input = b64(compact({"alg": alg, **header})) + "." + b64(compact(claims))
    return signing_input + "." + b64(sign(alg, key, signing_input.encode()))


def private(name: str):
    with open(os.path.join(KEYS, name + ".pem"), "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def verify_seeds() -> None:
    out = reset("verify")
    # Correctly signed by the fixture keys the target trusts, but expired (or
    # not yet valid) at the target's time: they pass every step up to the
    # claims, so mutations start deep in the verifier.
    claims = {"iss": "https://issuer.test", "sub": "alice", "aud": "api", "exp": EXPIRED}
    signed = [
        ("rsa2048", "RS256"), ("rsa2048", "PS256"), ("rsa3072", "RS512"),
        ("rsa3072", "PS384"), ("p256", "ES256"), ("p384", "ES384"),
        ("p521", "ES512"), ("ed25519", "EdDSA"),
    ]
    for kid, alg in signed:
        write(out, f"signed-expired-{alg.lower()}-{kid}",
              token(alg, private(kid), {"kid": kid, "typ": "JWT"}, claims))
    write(out, "signed-expired-es256-no-kid", token("ES256", private("p256"), {}, claims))
    future = {**claims, "exp": 2_000_000_000, "nbf": 1_900_000_000,
              "aud": ["api", "other"], "scope": "read write", "iat": 1_800_000_000}
    write(out, "signed-not-yet-valid-eddsa",
          token("EdDSA", private("ed25519"), {"kid": "ed25519"}, future))
    with open(os.path.join(KEYS, "jwks-hmac.json")) as f:
        secret_jwk = json.load(f)["keys"][0]
    secret = base64.urlsafe_b64decode(secret_jwk["k"] + "==")
    hs_claims = {**claims, "iss": "https://hmac.test"}
    for alg in ["HS256", "HS384", "HS512"]:
        write(out, f"signed-expired-{alg.lower()}",
              token(alg, secret, {"kid": secret_jwk["kid"]}, hs_claims))
    # Shapes the verifier must refuse early.
    write(out, "alg-none", "eyJhbGciOiJub25lIn0.e30.")
    write(out, "jwe-shaped", "a.b.c.d.e")
    write(out, "rs256-shaped",
          "eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgifQ."
          "eyJpc3MiOiJodHRwczovL2lzc3Vlci50ZXN0IiwiZXhwIjoxfQ.AAAA")
    dup = b64(b'{"alg":"RS256","alg":"none"}') + "." + b64(compact(claims)) + ".AAAA"
    write(out, "duplicate-alg", dup)
    # Project Wycheproof JWS vectors (Apache-2.0): the first case of each
    # group, and of each distinct comment in the groups of edge cases (up to
    # three there), skipping repeated tokens and the JSON serialization (not
    # a compact JWS, so never a &str token).
    doc = load("json_web_signature_test.json")
    written = set()
    for group in doc["testGroups"]:
        most = 3 if group["comment"] in ("base64", "SpecialCaseEs256", "ps512") else 1
        seen = set()
        for case in group["tests"]:
            jws = case["jws"]
            if not isinstance(jws, str) or jws in written:
                continue
            if case["comment"] in seen or len(seen) == most:
                continue
            seen.add(case["comment"])
            written.add(jws)
            write(out, f"wycheproof-jws-tc{case['tcId']}", jws)


# ---- jwks: JWK Set documents ------------------------------------------------

def jwks_seeds() -> None:
    out = reset("jwks")
    for name in ["jwks.json", "jwks-hmac.json"]:
        shutil.copy(os.path.join(KEYS, name), os.path.join(out, "tests-data-keys-" + name))
    shutil.copy(os.path.join(ROOT, "dev", "jwks.dev.json"), os.path.join(out, "dev-jwks.dev.json"))
    write(out, "ec-off-curve", '{"keys":[{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}]}')
    write(out, "mixed-oct-and-public",
          '{"keys":[{"kty":"oct","k":"' + b64(bytes(32)) + '"},'
          '{"kty":"OKP","crv":"Ed25519","x":"b94cHlMhQUziMbu0nn3dGSVg8qEWV3C-BeKTUk0VfeU"}]}')
    write(out, "duplicate-member", '{"keys":[],"keys":[{"kty":"oct","k":"AA"}]}')
    # Project Wycheproof JWK Set vectors (Apache-2.0): every group's set.
    doc = load("json_web_key_test.json")
    for i, group in enumerate(doc["testGroups"]):
        keys = group.get("public", group.get("private"))
        write(out, f"wycheproof-jwk-{i:02}-{group['comment']}", compact(keys))
    # And the key of every fourth JWS group (wrapped in a set, as
    # tests/wycheproof.rs does): RSA-PSS, RFC 7520 keys with key_ops, ...
    doc = load("json_web_signature_test.json")
    for i, group in enumerate(doc["testGroups"]):
        if i % 4:
            continue
        keys = group.get("public", group.get("private"))
        if "keys" not in keys:
            keys = {"keys": [keys]}
        write(out, f"wycheproof-jws-key-{i:02}-{group['comment']}", compact(keys))


# ---- discovery: OpenID discovery documents ----------------------------------

def discovery_seeds() -> None:
    out = reset("discovery")
    write(out, "minimal", '{"issuer":"https://issuer.example","jwks_uri":"https://issuer.example/jwks"}')
    full = {
        "issuer": "https://accounts.example.com",
        "authorization_endpoint": "https://accounts.example.com/o/oauth2/v2/auth",
        "token_endpoint": "https://oauth2.example.com/token",
        "userinfo_endpoint": "https://openidconnect.example.com/v1/userinfo",
        "jwks_uri": "https://www.example.com/oauth2/v3/certs",
        "response_types_supported": ["code", "token", "id_token", "code id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "scopes_supported": ["openid", "email", "profile"],
        "claims_supported": ["aud", "email", "exp", "iat", "iss", "sub"],
        "code_challenge_methods_supported": ["plain", "S256"],
    }
    write(out, "full", json.dumps(full, indent=1))
    write(out, "escapes", '{"jwks_uri":"https:\\/\\/i.example\\/k\\u0065ys","issuer":"https://i\\u00e9.example"}')
    write(out, "nested", '{"issuer":"https://i","jwks_uri":"https://i/k","mtls_endpoint_aliases":{"a":[1,2.5,null,true,{"b":[]}]}}')
    write(out, "missing-jwks-uri", '{"issuer":"https://issuer.example"}')
    write(out, "issuer-not-string", '{"issuer":1,"jwks_uri":"https://issuer.example/jwks"}')
    write(out, "duplicate-issuer", '{"issuer":"https://a","issuer":"https://b","jwks_uri":"https://a/k"}')
    write(out, "array", '["https://issuer.example","https://issuer.example/jwks"]')


# ---- config: TOML -----------------------------------------------------------

def config_seeds() -> None:
    out = reset("config")
    shutil.copy(os.path.join(ROOT, "dev", "jwtd.dev.toml"), os.path.join(out, "dev-jwtd.dev.toml"))
    shutil.copy(os.path.join(ROOT, "deploy", "kubernetes", "jwtd.toml"),
                os.path.join(out, "deploy-kubernetes-jwtd.toml"))
    # The example in src/config.rs's module docs.
    with open(os.path.join(ROOT, "src", "config.rs")) as f:
        docs = [line[4:] if line.startswith("//! ") else line[3:]
                for line in f.read().splitlines() if line.startswith("//!")]
    text = "\n".join(docs)
    example = re.search(r"```toml\n(.*?)```", text, re.S)
    write(out, "src-config-rs-example.toml", example.group(1))
    write(out, "minimal.toml",
          '[[issuers]]\nissuer = "https://issuer.example"\njwks_file = "jwks.json"\n')
    write(out, "three-sources.toml", """startup = "serve"
[[issuers]]
issuer = "https://a.example"
jwks_uri = "https://a.example/jwks"
refresh_seconds = 0.25
[[issuers]]
issuer = "https://b.example"
discovery_uri = "http://127.0.0.1:8080/.well-known/openid-configuration"
allow_insecure_http = true
algorithms = ["EdDSA", "PS512", "HS256"]
[[issuers]]
issuer = "https://c.example"
jwks_file = "/abs/keys.json"
leeway_seconds = 3600
kid_miss_wait_ms = 30000
""")
    write(out, "tls-telemetry.toml", """[tls]
cert_file = "tls/tls.crt"
key_file = "tls/tls.key"
client_ca_file = "tls/ca.crt"
reload_seconds = 1e-3
[telemetry]
otlp_endpoint = "http://collector:4318"
otlp_protocol = "http/protobuf"
traces_sampler = "traceidratio"
traces_sampler_arg = 0.5
resource_attributes = { "a" = "b" }
[ext_authz]
header = "x-token"
prefix = ""
claim_to_headers = { "scope" = "x-scope", "groups" = "x-groups" }
[[issuers]]
issuer = "https://issuer.example"
jwks_file = "k.json"
""")
    write(out, "invalid-values.toml", """listen = "not an address"
[limits]
max_batch = 0
[cache]
memo_entries = -1
[[issuers]]
issuer = ""
jwks_file = "a"
jwks_uri = "ftp://x"
""")


def json_seeds() -> None:
    """Headers and payloads, as decoded from a token: each seed is read by
    the json target both as claims and as a header."""
    out = reset("json")
    write(out, "header-rs256", compact({"alg": "RS256", "kid": "rsa2048", "typ": "JWT"}))
    write(out, "header-b64-crit", '{"alg":"ES256","b64":true,"crit":["exp"]}')
    write(out, "header-jwk", json.dumps({"alg": "RS256", "jku": "https://x", "jwk": {"kty": "oct", "k": "AA"}}))
    claims = {"iss": "https://issuer.test", "sub": "alice", "aud": ["api", "web"],
              "exp": 1_700_000_600, "nbf": 1_600_000_000.5, "iat": -1, "jti": "j-1",
              "azp": "web", "client_id": "cli", "scope": "read write", "scp": ["a", "b"],
              "roles": {"admin": [True, False, None, 1e-3, -0]}, "gone": None}
    write(out, "claims-all", compact(claims))
    write(out, "claims-spaced", json.dumps(claims, indent=2))
    write(out, "claims-escapes", r'{"iss":"https:\/\/i\u00e9","sub":"\uD83D\uDE00","\u0061ud":"x\ty"}')
    write(out, "claims-duplicate-nested", '{"x":[{"a":1,"b":2,"a":3}]}')
    write(out, "claims-numbers", '{"exp":9223372036854775807,"nbf":-9223372036854775809,"iat":1e3,"n":[0,-0.0,1E+2,12345678901234567890]}')
    write(out, "claims-deep", '{"x":' + "[" * 126 + "]" * 126 + "}")


def main() -> None:
    json_seeds()
    verify_seeds()
    jwks_seeds()
    discovery_seeds()
    config_seeds()
    for target in ["json", "verify", "jwks", "discovery", "config"]:
        folder = os.path.join(CORPUS, target)
        files = os.listdir(folder)
        size = sum(os.path.getsize(os.path.join(folder, f)) for f in files)
        print(f"{target}: {len(files)} files, {size} bytes")


if __name__ == "__main__":
    main()
