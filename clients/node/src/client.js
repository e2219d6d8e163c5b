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
// Whole-call problems (jwtd unreachable, a deadline passed, a batch over
// limits.max_batch) reject with a CallError; a rejected token is a result
// whose `valid` is false, never an error.

import path from 'node:path';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** jwtd's proto/ folder: JWTD_PROTO_DIR, else the repository's. */
export const PROTO_DIR = process.env.JWTD_PROTO_DIR ?? path.resolve(HERE, '../../../proto');

// Verify is read-only, so retrying it is always safe. gRPC retries a call
// that failed with UNAVAILABLE (jwtd restarting, a connection reset) with
// exponential backoff, 0.1 s then up to 0.2 s, 0.4 s (randomised), within
// the call's deadline. Other codes are never retried.
export const SERVICE_CONFIG = {
  methodConfig: [
    {
      name: [{ service: 'jwtd.v1.VerifierService' }],
      retryPolicy: {
        maxAttempts: 4,
        initialBackoff: '0.1s',
        maxBackoff: '1s',
        backoffMultiplier: 2,
        retryableStatusCodes: ['UNAVAILABLE'],
      },
    },
  ],
};

// Channel options suited to a service mesh (a sidecar proxy in front of jwtd,
// or jwtd behind an L4 load balancer):
// - keepalive pings every 30 s while calls are in flight, and the connection
//   is dropped when a ping is unanswered for 10 s, so a dead peer behind a
//   proxy is noticed; no pings on an idle connection, which proxies and gRPC
//   servers with default ping policies punish with GOAWAY;
// - retries on (see SERVICE_CONFIG);
// - responses up to 64 MiB: a full batch of 1024 tokens with their payloads
//   can pass gRPC's 4 MiB default.
export const DEFAULT_OPTIONS = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 0,
  'grpc.enable_retries': 1,
  'grpc.service_config': JSON.stringify(SERVICE_CONFIG),
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
};

// jwtd's gRPC server (tonic 0.14) answers a call whose deadline passed on the
// server side with CANCELLED and this message instead of DEADLINE_EXCEEDED;
// whichever side notices first, callers see DEADLINE_EXCEEDED.
const TONIC_TIMEOUT = 'Timeout expired';

/** The whole Verify call failed: no per-token results exist. */
export class CallError extends Error {
  /**
   * @param {number} code a grpc.status value: INVALID_ARGUMENT for a batch
   *   over jwtd's limit or an unconfigured issuer filter (do not retry),
   *   DEADLINE_EXCEEDED, UNAVAILABLE after the retries ran out
   * @param {string} details the server's message
   * @param {Error} cause the grpc-js error
   */
  constructor(code, details, cause) {
    super(`${grpc.status[code] ?? code}: ${details}`, { cause });
    this.name = 'CallError';
    this.code = code;
    this.details = details;
  }
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
 *   "STATUS_EXPIRED" (a status newer than the proto file reads as its number)
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
   */
  constructor(target, opts = {}) {
    const jwtd = loadJwtdProto(opts.protoDir);
    this.timeoutMs = opts.timeoutMs ?? 2000;
    this.stub = new jwtd.VerifierService(
      target,
      opts.credentials ?? grpc.credentials.createInsecure(),
      opts.options ?? DEFAULT_OPTIONS,
    );
  }

  /**
   * Verifies a batch; one Result per token, in order. `audiences` and
   * `issuer` only narrow jwtd's configured policy. `metadata` is sent as
   * request headers, e.g. { traceparent: '00-<trace-id>-<span-id>-01' }.
   *
   * @param {string[]} tokens compact JWS, no "Bearer " prefix
   * @param {object} [opts]
   * @param {string[]} [opts.audiences]
   * @param {string} [opts.issuer]
   * @param {number} [opts.timeoutMs]
   * @param {Record<string, string>} [opts.metadata]
   * @returns {Promise<Result[]>} rejects with CallError
   */
  verify(tokens, { audiences = [], issuer = '', timeoutMs, metadata = {} } = {}) {
    const md = new grpc.Metadata();
    for (const [key, value] of Object.entries(metadata)) md.set(key, value);
    const deadline = Date.now() + (timeoutMs ?? this.timeoutMs);
    return new Promise((resolve, reject) => {
      this.stub.Verify({ tokens, audiences, issuer }, md, { deadline }, (error, response) => {
        if (error) {
          let code = error.code;
          if (code === grpc.status.CANCELLED && error.details === TONIC_TIMEOUT) {
            code = grpc.status.DEADLINE_EXCEEDED;
          }
          reject(new CallError(code, error.details ?? '', error));
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
