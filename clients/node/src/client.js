// A small client for jwtd's batch Verify RPC, on @grpc/grpc-js.
//
// The proto is loaded at run time from jwtd's proto/ folder (no generated
// code). Make one JwtdClient per process and share it: it holds one channel
// (one HTTP/2 connection, multiplexed).
//
//   const jwtd = new JwtdClient('127.0.0.1:50051');
//   const results = await jwtd.verify([token], { audiences: ['orders-api'] });
//   for (const r of results) if (!r.valid) console.log(r.status, r.reason);
//
// Whole-call problems (jwtd unreachable or overloaded, a deadline passed, a
// batch over limits.max_batch, a caller jwtd does not allow) reject with a
// CallError; a rejected token is a result whose `valid` is false, never an
// error, and never retried by the client: the same token gets the same
// answer (only STATUS_KEYS_UNAVAILABLE may change later).

import path from 'node:path';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** jwtd's proto/ folder: JWTD_PROTO_DIR, else the repository's. */
export const PROTO_DIR = process.env.JWTD_PROTO_DIR ?? path.resolve(HERE, '../../../proto');

// Verify is read-only, so retrying it is always safe. gRPC itself retries a
// call that failed with
// - UNAVAILABLE (jwtd restarting, a connection reset), with exponential
//   backoff, 0.1 s then up to 0.2 s, 0.4 s (randomised);
// - RESOURCE_EXHAUSTED (jwtd shed the call, or the caller is over its rate
//   limit), after the `grpc-retry-pushback-ms` jwtd sends with it (gRFC A6):
//   the time until there is room. A negative pushback (a batch over the
//   caller's burst, which can never pass) stops the retries at once.
// At most 4 attempts, all within the call's one deadline. Other codes
// (PERMISSION_DENIED, INVALID_ARGUMENT, DEADLINE_EXCEEDED, ...) are never
// retried: another attempt would get the same answer.
export const SERVICE_CONFIG = {
  methodConfig: [
    {
      name: [{ service: 'jwtd.v1.VerifierService' }],
      retryPolicy: {
        maxAttempts: 4,
        initialBackoff: '0.1s',
        maxBackoff: '1s',
        backoffMultiplier: 2,
        retryableStatusCodes: ['UNAVAILABLE', 'RESOURCE_EXHAUSTED'],
      },
    },
  ],
};

// grpc-js keeps a call's request to replay it on a retry only up to 1 MiB a
// call and 16 MiB for all calls of the channel at once by default: a big
// batch, or many calls in flight while jwtd is overloaded (exactly when
// retries matter), would silently not be retried. 8 MiB a call holds jwtd's
// largest request with default limits (1024 tokens of 8 KiB); the memory is
// the requests the callers hold anyway, released when each call ends.
export const RETRY_BUFFER_BYTES = 8 * 1024 * 1024;
export const CHANNEL_RETRY_BUFFER_BYTES = 64 * 1024 * 1024;

// Channel options suited to a service mesh (a sidecar proxy in front of jwtd,
// or jwtd behind an L4 load balancer):
// - keepalive pings every 30 s while calls are in flight, and the connection
//   is dropped when a ping is unanswered for 10 s, so a dead peer behind a
//   proxy is noticed; no pings on an idle connection, which proxies and gRPC
//   servers with default ping policies punish with GOAWAY;
// - retries on (see SERVICE_CONFIG), with retry buffers for big batches;
// - responses up to 64 MiB: a full batch of 1024 tokens with their payloads
//   can pass gRPC's 4 MiB default.
export const DEFAULT_OPTIONS = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 0,
  'grpc.enable_retries': 1,
  'grpc.service_config': JSON.stringify(SERVICE_CONFIG),
  'grpc.per_rpc_retry_buffer_size': RETRY_BUFFER_BYTES,
  'grpc.retry_buffer_size': CHANNEL_RETRY_BUFFER_BYTES,
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
};

// The gRFC A6 trailer: how long to wait before retrying, in milliseconds;
// negative means "do not retry".
export const PUSHBACK_TRAILER = 'grpc-retry-pushback-ms';

// jwtd's gRPC server (tonic 0.14) answers a call whose deadline passed on the
// server side with CANCELLED and this message instead of DEADLINE_EXCEEDED;
// whichever side notices first, callers see DEADLINE_EXCEEDED.
const TONIC_TIMEOUT = 'Timeout expired';

/**
 * The whole Verify call failed: no per-token results exist. `code` (a
 * grpc.status value) says why:
 * - RESOURCE_EXHAUSTED: jwtd shed the call (overloaded) or the caller is over
 *   its rate limit, and the retries after jwtd's pushback ran out; or, with
 *   `pushbackMs === -1`, a batch over the caller's burst, never retried:
 *   split the batch;
 * - PERMISSION_DENIED: jwtd does not allow this caller (never retried);
 * - INVALID_ARGUMENT: a batch over jwtd's limits.max_batch, an issuer
 *   filter naming no configured issuer, or an empty audience or required
 *   scope, or a scope with whitespace (never retried);
 * - DEADLINE_EXCEEDED, or UNAVAILABLE after the retries ran out.
 */
export class CallError extends Error {
  /**
   * @param {number} code a grpc.status value
   * @param {string} details the server's message
   * @param {Error} cause the grpc-js error
   * @param {number | null} [pushbackMs] the last answer's
   *   grpc-retry-pushback-ms: milliseconds to wait, -1 for "do not retry",
   *   null when jwtd sent none
   */
  constructor(code, details, cause, pushbackMs = null) {
    super(`${grpc.status[code] ?? code}: ${details}`, { cause });
    this.name = 'CallError';
    this.code = code;
    this.details = details;
    this.pushbackMs = pushbackMs;
  }
}

/** The pushback trailer of a failed call, or null without a readable one. */
function pushbackOf(error) {
  const [value] = error.metadata?.get(PUSHBACK_TRAILER) ?? [];
  if (typeof value !== 'string' || !/^-?\d+$/.test(value)) return null;
  return Number(value);
}

/**
 * @typedef {object} Claims The registered claims of a VALID token.
 * @property {string} issuer
 * @property {string} subject
 * @property {string[]} audiences
 * @property {number} expiresAt seconds since the Unix epoch; 0 when absent
 * @property {number} notBefore
 * @property {number} issuedAt
 * @property {string} jwtId
 * @property {string} keyId
 * @property {string} algorithm
 * @property {Buffer} payloadJson the payload exactly as signed
 */

/**
 * @typedef {object} Result What jwtd said about one token.
 * @property {string} status the proto enum name, e.g. "STATUS_VALID",
 *   "STATUS_EXPIRED", "STATUS_INSUFFICIENT_SCOPE" (see README.md for all of
 *   them; a status newer than the proto file read at run time reads as its
 *   number)
 * @property {boolean} valid status === "STATUS_VALID"
 * @property {string} reason a short explanation (never the token)
 * @property {Claims | null} claims present only when VALID
 * @property {boolean} cached the signature check came from jwtd's memo
 */

/** Loads jwtd.v1 from proto files at run time. */
export function loadJwtdProto(protoDir = PROTO_DIR) {
  const definition = protoLoader.loadSync('jwtd/v1/jwtd.proto', {
    includeDirs: [protoDir],
    enums: String,
    longs: Number,
    bytes: Buffer,
    defaults: true,
  });
  return grpc.loadPackageDefinition(definition).jwtd.v1;
}

export class JwtdClient {
  /**
   * @param {string} target e.g. "127.0.0.1:50051" or "dns:///jwtd.internal:50051"
   * @param {object} [opts]
   * @param {number} [opts.timeoutMs=2000] default deadline of each call: always have one
   * @param {grpc.ChannelCredentials} [opts.credentials] plaintext when absent,
   *   right for loopback or a mesh sidecar that adds mTLS
   * @param {object} [opts.options] channel options (default DEFAULT_OPTIONS)
   * @param {string} [opts.protoDir] where jwtd's proto/ is
   * @param {Record<string, string>} [opts.metadata] sent with every call
   *   (a call's own metadata replaces a key it also names): the place for the
   *   caller identity jwtd reads with `[callers] identity = "header:NAME"`,
   *   e.g. { 'x-caller': 'orders-api' }
   */
  constructor(target, opts = {}) {
    const jwtd = loadJwtdProto(opts.protoDir);
    this.timeoutMs = opts.timeoutMs ?? 2000;
    this.metadata = { ...opts.metadata };
    this.stub = new jwtd.VerifierService(
      target,
      opts.credentials ?? grpc.credentials.createInsecure(),
      opts.options ?? DEFAULT_OPTIONS,
    );
  }

  /**
   * Verifies a batch; one Result per token, in order. `audiences` and
   * `issuer` only narrow jwtd's configured policy. `requiredScopes` adds to
   * the issuer's configured ones: each token must grant every one of them,
   * in its `scope` claim (space-separated) or `scp` (a string or an array),
   * or it is STATUS_INSUFFICIENT_SCOPE with a reason naming the first scope
   * missing; a scope that is empty or holds whitespace fails the call with
   * INVALID_ARGUMENT (name each scope on its own). `metadata` is sent as
   * request headers with the client's (replacing a key both name), e.g.
   * { traceparent: '00-<trace-id>-<span-id>-01' }.
   *
   * @param {string[]} tokens compact JWS, no "Bearer " prefix
   * @param {object} [opts]
   * @param {string[]} [opts.audiences]
   * @param {string} [opts.issuer]
   * @param {string[]} [opts.requiredScopes] e.g. ['orders:read']
   * @param {number} [opts.timeoutMs]
   * @param {Record<string, string>} [opts.metadata]
   * @returns {Promise<Result[]>} rejects with CallError
   */
  verify(tokens, { audiences = [], issuer = '', requiredScopes = [], timeoutMs, metadata = {} } = {}) {
    const md = new grpc.Metadata();
    for (const [key, value] of Object.entries(this.metadata)) md.set(key, value);
    for (const [key, value] of Object.entries(metadata)) md.set(key, value); // the call's own win
    const deadline = Date.now() + (timeoutMs ?? this.timeoutMs);
    return new Promise((resolve, reject) => {
      this.stub.Verify({ tokens, audiences, issuer, requiredScopes }, md, { deadline }, (error, response) => {
        if (error) {
          let code = error.code;
          if (code === grpc.status.CANCELLED && error.details === TONIC_TIMEOUT) {
            code = grpc.status.DEADLINE_EXCEEDED;
          }
          reject(new CallError(code, error.details ?? '', error, pushbackOf(error)));
          return;
        }
        resolve(response.results.map(toResult));
      });
    });
  }

  close() {
    this.stub.close();
  }
}

function toResult(r) {
  return {
    status: r.status,
    valid: r.status === 'STATUS_VALID',
    reason: r.reason,
    claims: r.claims ?? null,
    cached: r.cached,
  };
}

export { grpc };
