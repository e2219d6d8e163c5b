"""A small client for jwtd's batch ``Verify`` RPC.

Make one :class:`Client` per process and share it: it holds one gRPC channel
(one HTTP/2 connection, multiplexed), which is safe to use from many threads.

    with Client("127.0.0.1:50051") as jwtd:
        for result in jwtd.verify([token], audiences=["orders-api"]):
            if result.valid:
                ...  # result.claims.subject, result.claims.payload()
            else:
                print(result.status, result.reason)

Whole-call problems (jwtd unreachable or overloaded, a deadline passed, a
batch over ``limits.max_batch``, a caller jwtd does not allow) raise
:class:`CallError`; a rejected token is a :class:`Result` whose ``valid`` is
False, never an exception, and never retried by the client: the same token
gets the same answer (only ``STATUS_KEYS_UNAVAILABLE`` may change later).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence, Tuple

import grpc

from jwtd.v1 import jwtd_pb2, jwtd_pb2_grpc

__all__ = ["CallError", "Claims", "Client", "Result", "DEFAULT_OPTIONS"]

#: Verify is read-only, so retrying it is always safe. gRPC itself retries a
#: call that failed with
#: - UNAVAILABLE (jwtd restarting, a connection reset), with exponential
#:   backoff: 0.1 s, then up to 0.2 s, 0.4 s (randomised);
#: - RESOURCE_EXHAUSTED (jwtd shed the call, or the caller is over its rate
#:   limit), after the ``grpc-retry-pushback-ms`` jwtd sends with it (gRFC A6):
#:   the time until there is room. A negative pushback (a batch over the
#:   caller's burst, which can never pass) stops the retries at once.
#: At most 4 attempts, all within the call's one deadline. Other codes
#: (PERMISSION_DENIED, INVALID_ARGUMENT, DEADLINE_EXCEEDED, ...) are never
#: retried: another attempt would get the same answer.
SERVICE_CONFIG = {
    "methodConfig": [
        {
            "name": [{"service": "jwtd.v1.VerifierService"}],
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.1s",
                "maxBackoff": "1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
            },
        }
    ]
}

#: gRPC keeps a call's request to replay it on a retry only up to this size
#: (grpc-core's default is 256 KiB, which a batch of a few hundred tokens
#: passes: such a call would silently not be retried). 8 MiB holds jwtd's
#: largest request with default limits (1024 tokens of 8 KiB); the memory is
#: the request the caller holds anyway, released when the call ends.
RETRY_BUFFER_BYTES = 8 * 1024 * 1024

#: Channel options suited to a service mesh (a sidecar proxy in front of
#: jwtd, or jwtd behind an L4 load balancer):
#: - keepalive pings every 30 s on a connection with calls in flight, and
#:   the connection is dropped when a ping is unanswered for 10 s, so a dead
#:   peer behind a proxy is noticed; no pings on an idle connection, which
#:   proxies and gRPC servers with default ping policies punish with GOAWAY;
#: - retries on (see SERVICE_CONFIG), with a retry buffer for big batches
#:   (RETRY_BUFFER_BYTES);
#: - responses up to 64 MiB: a full batch of 1024 tokens with their payloads
#:   can pass gRPC's 4 MiB default.
DEFAULT_OPTIONS: Tuple[Tuple[str, Any], ...] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.enable_retries", 1),
    ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
    ("grpc.per_rpc_retry_buffer_size", RETRY_BUFFER_BYTES),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)

#: The gRFC A6 trailer: how long to wait before retrying, in milliseconds;
#: negative means "do not retry".
PUSHBACK_TRAILER = "grpc-retry-pushback-ms"


#: jwtd's gRPC server (tonic 0.14) answers a call whose deadline passed on the
#: server side with CANCELLED and this message instead of DEADLINE_EXCEEDED;
#: whichever side notices first, callers see DEADLINE_EXCEEDED.
TONIC_TIMEOUT = "Timeout expired"


class CallError(Exception):
    """The whole Verify call failed: no per-token results exist.

    ``code`` is the gRPC status code and ``details`` jwtd's message:

    - RESOURCE_EXHAUSTED: jwtd shed the call (overloaded) or the caller is
      over its rate limit, and the retries after jwtd's pushback ran out; or,
      with ``pushback_ms == -1``, a batch over the caller's burst, never
      retried: split the batch.
    - PERMISSION_DENIED: jwtd does not allow this caller (never retried).
    - INVALID_ARGUMENT: a batch over jwtd's ``limits.max_batch``, an issuer
      filter naming no configured issuer, or an empty audience or required
      scope, or a scope with whitespace (never retried).
    - DEADLINE_EXCEEDED, or UNAVAILABLE after the retries ran out.

    ``pushback_ms`` is the last attempt's ``grpc-retry-pushback-ms`` trailer:
    how long jwtd asked the caller to wait, -1 for "do not retry", None when
    jwtd sent none.
    """

    def __init__(self, code: grpc.StatusCode, details: str, pushback_ms: Optional[int] = None) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.pushback_ms = pushback_ms


def _pushback_ms(error: grpc.RpcError) -> Optional[int]:
    """The pushback trailer of a failed call, if it has a readable one."""
    trailers = error.trailing_metadata() or ()
    for key, value in trailers:
        if key == PUSHBACK_TRAILER:
            try:
                return int(value)
            except ValueError:
                return None
    return None


@dataclass(frozen=True)
class Claims:
    """The registered claims of a VALID token, and its payload as signed."""

    issuer: str
    subject: str
    audiences: Tuple[str, ...]
    expires_at: int  # seconds since the Unix epoch; 0 when absent
    not_before: int
    issued_at: int
    jwt_id: str
    key_id: str
    algorithm: str
    payload_json: bytes

    def payload(self) -> dict[str, Any]:
        """The whole payload, for custom claims such as scopes."""
        value = json.loads(self.payload_json)
        if not isinstance(value, dict):  # jwtd only accepts JSON object payloads
            raise ValueError("payload is not a JSON object")
        return value


@dataclass(frozen=True)
class Result:
    """What jwtd said about one token."""

    #: The proto enum name, e.g. "STATUS_VALID", "STATUS_EXPIRED",
    #: "STATUS_INSUFFICIENT_SCOPE" (see README.md for all of them). A status
    #: added to jwtd after these stubs were built reads "STATUS_<number>":
    #: reinstall the package to rebuild them from proto/.
    status: str
    #: A short explanation (never the token); empty when VALID.
    reason: str
    #: Present only when VALID.
    claims: Optional[Claims]
    #: True when jwtd answered the signature check from its memo.
    cached: bool

    @property
    def valid(self) -> bool:
        return self.status == "STATUS_VALID"


def _status_name(number: int) -> str:
    try:
        return str(jwtd_pb2.Status.Name(number))
    except ValueError:
        return f"STATUS_{number}"


def _result(message: Any) -> Result:
    claims = None
    if message.HasField("claims"):
        c = message.claims
        claims = Claims(
            issuer=c.issuer,
            subject=c.subject,
            audiences=tuple(c.audiences),
            expires_at=c.expires_at,
            not_before=c.not_before,
            issued_at=c.issued_at,
            jwt_id=c.jwt_id,
            key_id=c.key_id,
            algorithm=c.algorithm,
            payload_json=c.payload_json,
        )
    return Result(
        status=_status_name(message.status),
        reason=message.reason,
        claims=claims,
        cached=message.cached,
    )


class Client:
    """One channel to jwtd, reused by every call.

    ``target`` is a gRPC target ("127.0.0.1:50051", "dns:///jwtd.internal:50051").
    Without ``credentials`` the channel is plaintext, which is right for
    loopback or a mesh sidecar that adds mTLS; pass
    ``grpc.ssl_channel_credentials(...)`` otherwise. ``timeout`` (seconds)
    is the default deadline of each call: always have one. ``metadata`` is
    sent with every call (a call's own metadata replaces a key it also
    names): the place for the caller identity jwtd reads with
    ``[callers] identity = "header:NAME"``, e.g. ``[("x-caller", "orders-api")]``.
    """

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        timeout: float = 2.0,
        credentials: Optional[grpc.ChannelCredentials] = None,
        options: Sequence[Tuple[str, Any]] = DEFAULT_OPTIONS,
        metadata: Sequence[Tuple[str, str]] = (),
    ) -> None:
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=list(options))
        else:
            self._channel = grpc.secure_channel(target, credentials, options=list(options))
        self._stub = jwtd_pb2_grpc.VerifierServiceStub(self._channel)
        self._timeout = timeout
        self._metadata = tuple(metadata)

    def verify(
        self,
        tokens: Sequence[str],
        audiences: Iterable[str] = (),
        issuer: str = "",
        *,
        required_scopes: Iterable[str] = (),
        timeout: Optional[float] = None,
        metadata: Sequence[Tuple[str, str]] = (),
    ) -> list[Result]:
        """Verifies a batch; one :class:`Result` per token, in order.

        ``audiences`` and ``issuer`` only narrow jwtd's configured policy.
        ``required_scopes`` adds to the issuer's configured ones: each token
        must grant every one of them, in its ``scope`` claim (space-separated)
        or ``scp`` (a string or an array), or it is
        ``STATUS_INSUFFICIENT_SCOPE`` with a reason naming the first scope
        missing. A scope that is empty or holds whitespace is a
        :class:`CallError` (INVALID_ARGUMENT): name each scope on its own.
        ``metadata`` is sent as gRPC request headers with the client's
        (replacing a key both name), e.g.
        ``[("traceparent", "00-<trace-id>-<span-id>-01")]``.
        Raises :class:`CallError` when the call as a whole fails.
        """
        own = {key for key, _ in metadata}
        headers = [*(kv for kv in self._metadata if kv[0] not in own), *metadata]
        request = jwtd_pb2.VerifyRequest(
            tokens=list(tokens),
            audiences=list(audiences),
            issuer=issuer,
            required_scopes=list(required_scopes),
        )
        try:
            response = self._stub.Verify(
                request,
                timeout=self._timeout if timeout is None else timeout,
                metadata=headers,
            )
        except grpc.RpcError as error:
            # A failed unary call is also a grpc.Call with a code and details.
            code, details = error.code(), error.details() or ""
            if code == grpc.StatusCode.CANCELLED and details == TONIC_TIMEOUT:
                code = grpc.StatusCode.DEADLINE_EXCEEDED
            raise CallError(code, details, _pushback_ms(error)) from error
        return [_result(r) for r in response.results]

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
