#!/usr/bin/env python3
"""Writes jwks.json (public JWKs of the PEM keys here, plus one HMAC secret)
with the `cryptography` package: an implementation independent of jwtd, so
the test key sets are not derived by the code under test.

Run once when the keys change: python3 make_jwks.py
"""
import base64
import json
import os
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

HERE = os.path.dirname(os.path.abspath(__file__))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def uint(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def jwk(name: str) -> dict:
    with open(os.path.join(HERE, name + ".pem"), "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None).public_key()
    if isinstance(key, rsa.RSAPublicKey):
        nums = key.public_numbers()
        return {"kty": "RSA", "kid": name, "n": b64(uint(nums.n)), "e": b64(uint(nums.e))}
    if isinstance(key, ec.EllipticCurvePublicKey):
        size = (key.curve.key_size + 7) // 8
        nums = key.public_numbers()
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[key.curve.name]
        return {"kty": "EC", "kid": name, "crv": crv,
                "x": b64(nums.x.to_bytes(size, "big")), "y": b64(nums.y.to_bytes(size, "big"))}
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "kid": name, "crv": "Ed25519", "x": b64(raw)}
    sys.exit(f"unsupported key {name}")


def main() -> None:
    names = ["rsa2048", "rsa3072", "p256", "p384", "p521", "ed25519"]
    public = {"keys": [jwk(n) for n in names]}
    with open(os.path.join(HERE, "jwks.json"), "w") as f:
        json.dump(public, f, indent=2)
        f.write("\n")
    secret = {"keys": [{"kty": "oct", "kid": "hs", "k": b64(os.urandom(64))}]}
    with open(os.path.join(HERE, "jwks-hmac.json"), "w") as f:
        json.dump(secret, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
