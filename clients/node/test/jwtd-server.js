// Starts the real jwtd binary for the suite, on an ephemeral port.
//
// JWTD_BIN names the binary (default: <repo>/target/release/jwtd). The config
// is written to a temp folder; its issuers read the repository's test key sets
// (tests/data/keys) and each names the audience its tokens carry (an issuer
// with neither `audiences` nor `allow_any_audience = true` rejects every token
// unless the call names audiences); TYPED_ISSUER accepts only access tokens
// (header typ "at+jwt"); and one issuer fetches its keys from a JWKS server
// run by this suite, which answers the first fetch and then hangs, so that a call
// waiting on an unknown-kid refresh outlives its deadline. The suite starts
// once health reports jwtd.v1.VerifierService SERVING (every issuer loaded).
//
// A second jwtd (startGuardedJwtd) only lets listed callers in, names them by
// the x-caller header and limits their rates (GUARDED_CALLERS); it serves
// /metrics on a free loopback port, where the tests read how many calls it
// refused, and why.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const KEYS = path.join(REPO, 'tests/data/keys');

export const ISSUER = 'https://issuer.test'; // public keys: tests/data/keys/jwks.json
export const HMAC_ISSUER = 'https://hmac.test'; // one oct secret: jwks-hmac.json
export const SLOW_ISSUER = 'https://slow.test'; // keys from the hanging JWKS server
export const TYPED_ISSUER = 'https://typed.test'; // jwks.json again, accepting only typ "at+jwt"
export const AUDIENCE = 'orders-api';
export const MAX_BATCH = 8;

export const CALLER_HEADER = 'x-caller';
// The guarded jwtd's callers. "limited" refills 2 tokens a second, so a
// 2-token call right after another waits about 1 s: longer than gRPC's own
// backoff could ever wait over 4 attempts (0.1 + 0.2 + 0.4 s at most), so
// only a retry that honours jwtd's pushback gets through. "bulk" takes
// batches over 1 MiB (BULK_BATCH tokens of about 4 KiB), past grpc-js's
// default 1 MiB retry buffer.
export const BULK_BATCH = 300;
const GUARDED_CALLERS = `
[callers]
identity = "header:${CALLER_HEADER}"
allow_unlisted = false

[[callers.caller]]
id = "limited"
tokens_per_second = 2
burst = 2

[[callers.caller]]
id = "bulk"
tokens_per_second = ${BULK_BATCH}
burst = ${BULK_BATCH}

[[callers.caller]]
id = "free"
`;

/** Serves jwks.json once, then holds every later request until closed. */
async function hangingJwks() {
  const body = readFileSync(path.join(KEYS, 'jwks.json'));
  let served = false;
  const held = [];
  const server = http.createServer((req, res) => {
    if (served) {
      held.push(res);
      return;
    }
    served = true;
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/jwks.json`,
    close() {
      for (const res of held) res.destroy();
      server.closeAllConnections();
      server.close();
    },
  };
}

function config(jwksUrl) {
  return `
listen = "127.0.0.1:0"
metrics_listen = ""

[limits]
max_batch = ${MAX_BATCH}

[fetch]
timeout_seconds = 120

[[issuers]]
issuer = "${ISSUER}"
jwks_file = ${JSON.stringify(path.join(KEYS, 'jwks.json'))}
audiences = ["${AUDIENCE}"]

[[issuers]]
issuer = "${HMAC_ISSUER}"
jwks_file = ${JSON.stringify(path.join(KEYS, 'jwks-hmac.json'))}
audiences = ["${AUDIENCE}"]

[[issuers]]
issuer = "${SLOW_ISSUER}"
jwks_uri = "${jwksUrl}"
allow_insecure_http = true
kid_miss_wait_ms = 30000
audiences = ["${AUDIENCE}"]

[[issuers]]
issuer = "${TYPED_ISSUER}"
jwks_file = ${JSON.stringify(path.join(KEYS, 'jwks.json'))}
audiences = ["${AUDIENCE}"]
types = ["at+jwt"]
`;
}

function guardedConfig(metricsPort) {
  return `
listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:${metricsPort}"

[limits]
max_batch = ${2 * BULK_BATCH}

[[issuers]]
issuer = "${ISSUER}"
jwks_file = ${JSON.stringify(path.join(KEYS, 'jwks.json'))}
audiences = ["${AUDIENCE}"]
${GUARDED_CALLERS}`;
}

/**
 * A port nothing listens on now (jwtd cannot report the port it took for
 * metrics_listen = ":0", so the suite picks one).
 */
function freeLoopbackPort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/**
 * Waits for health to say jwtd.v1.VerifierService is SERVING: the ready line
 * comes before keys fetched from a URL are loaded.
 */
async function waitUntilServing(address, log) {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const definition = protoLoader.loadSync(path.join(here, 'health-v1-subset.proto'), { enums: String });
  const { Health } = grpc.loadPackageDefinition(definition).grpc.health.v1;
  const health = new Health(address, grpc.credentials.createInsecure());
  try {
    for (let i = 0; i < 300; i++) {
      const answer = await new Promise((resolve, reject) =>
        health.Check({ service: 'jwtd.v1.VerifierService' }, { deadline: Date.now() + 5000 }, (e, r) =>
          e ? reject(e) : resolve(r),
        ),
      );
      if (answer.status === 'SERVING') return;
      await sleep(100);
    }
  } finally {
    health.close();
  }
  throw new Error(`jwtd.v1.VerifierService not SERVING after 30 s:\n${log.join('\n')}`);
}

/** Starts jwtd; resolves to { address, stop() } once it printed its ready line. */
export async function startJwtd() {
  const jwks = await hangingJwks();
  try {
    const jwtd = await launch(config(jwks.url));
    return {
      address: jwtd.address,
      async stop() {
        await jwtd.stop();
        jwks.close();
      },
    };
  } catch (error) {
    jwks.close();
    throw error;
  }
}

/**
 * Starts the guarded jwtd; resolves to { address, refused(reason, caller),
 * stop() } once it is SERVING.
 */
export async function startGuardedJwtd() {
  const metricsPort = await freeLoopbackPort();
  const jwtd = await launch(guardedConfig(metricsPort));
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  return {
    address: jwtd.address,
    stop: jwtd.stop,
    /**
     * jwtd_refused_calls_total for Verify with this reason and caller label
     * (0 before the first such refusal: the series does not exist yet).
     */
    async refused(reason, caller) {
      const want = { method: 'jwtd.v1.VerifierService/Verify', reason, caller };
      const text = await (await fetch(metricsUrl, { signal: AbortSignal.timeout(10_000) })).text();
      let total = 0;
      for (const line of text.split('\n')) {
        const m = /^jwtd_refused_calls_total\{(.*)\} (\S+)$/.exec(line);
        if (!m) continue;
        const labels = Object.fromEntries([...m[1].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
        const same =
          Object.keys(labels).length === Object.keys(want).length &&
          Object.entries(want).every(([k, v]) => labels[k] === v);
        if (same) total += Number(m[2]);
      }
      return total;
    },
  };
}

/** Runs jwtd on `configText`; resolves to { address, stop() } once it is SERVING. */
async function launch(configText) {
  const binary = process.env.JWTD_BIN ?? path.join(REPO, 'target/release/jwtd');
  if (!existsSync(binary)) {
    throw new Error(`no jwtd binary at ${binary}: build it (cargo build --release) or set JWTD_BIN`);
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'jwtd-node-'));
  const configPath = path.join(dir, 'jwtd.toml');
  writeFileSync(configPath, configText);

  const child = spawn(binary, ['--log-format', 'json', '--config', configPath], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const log = [];
  const exited = new Promise((resolve) => child.once('exit', resolve));
  // Also when the test process dies of an uncaught error before after().
  process.once('exit', () => child.kill('SIGKILL'));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const address = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ready line in 30 s:\n${log.join('\n')}`)), 30_000);
      child.once('exit', (code) => reject(new Error(`jwtd exited with ${code}:\n${log.join('\n')}`)));
      // Keeps reading stderr for the whole run so jwtd never blocks on it.
      readline.createInterface({ input: child.stderr }).on('line', (line) => {
        log.push(line);
        let event;
        try {
          event = JSON.parse(line);
        } catch {
          return;
        }
        if (String(event.fields?.message).startsWith('jwtd ready')) {
          clearTimeout(timer);
          resolve(event.fields.addr);
        }
      });
    });
    await waitUntilServing(address, log);
    return { address, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
