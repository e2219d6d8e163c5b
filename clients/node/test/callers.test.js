// jwtd's access control and overload answers, as the client handles them.
//
// Against the guarded jwtd (jwtd-server.js): callers named by the x-caller
// header, only listed ones allowed, rates limited. Whether gRPC retried a
// call is read from jwtd's own count of refusals on /metrics, not from
// timing: jwtd counts a refusal before it answers, so every attempt of a
// call that has returned is already counted.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { importPKCS8, SignJWT } from 'jose';

import { CallError, grpc, JwtdClient } from '../src/client.js';
import { AUDIENCE, BULK_BATCH, CALLER_HEADER, ISSUER, KEYS, startGuardedJwtd } from './jwtd-server.js';

/** An RS256 token by rsa2048 for ISSUER and AUDIENCE, valid 5 min. */
async function mint(claims = {}) {
  const key = await importPKCS8(readFileSync(path.join(KEYS, 'rsa2048.pem'), 'utf8'), 'RS256');
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', kid: 'rsa2048' })
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setSubject('alice')
    .setIssuedAt(now)
    .setExpirationTime(now + 300)
    .sign(key);
}

let guarded;
const clients = [];

/** A client that names itself `caller`, closed after the suite. */
function asCaller(caller) {
  const client = new JwtdClient(guarded.address, { timeoutMs: 10_000, metadata: { [CALLER_HEADER]: caller } });
  clients.push(client);
  return client;
}

before(async () => {
  guarded = await startGuardedJwtd();
});

after(async () => {
  for (const client of clients) client.close();
  await guarded?.stop();
});

test('a caller over its rate limit is retried after the pushback, and succeeds', async () => {
  const limited = asCaller('limited');
  const token = await mint();
  const first = await limited.verify([token, token]); // the whole burst of 2
  assert.deepEqual(first.map((r) => r.status), ['STATUS_VALID', 'STATUS_VALID']);
  const refusedBefore = await guarded.refused('rate_limited', 'limited');
  // The bucket is empty: jwtd refuses this call with a pushback of about 1 s
  // (2 tokens at 2 a second); gRPC waits that long and the retry passes. Its
  // own backoff could not wait that long in 4 attempts, so success here
  // means the pushback was honoured.
  const second = await limited.verify([token, token]);
  assert.deepEqual(second.map((r) => r.status), ['STATUS_VALID', 'STATUS_VALID']);
  assert.ok(
    (await guarded.refused('rate_limited', 'limited')) >= refusedBefore + 1,
    'no refusal counted: the call was never retried',
  );
});

test('a big batch over the rate limit is retried too', async () => {
  // About 1.2 MB a call: retried only because the client raises grpc-js's
  // retry buffer (RETRY_BUFFER_BYTES) above its 1 MiB default.
  const bulk = asCaller('bulk');
  const batch = Array(BULK_BATCH).fill(await mint({ padding: 'x'.repeat(3000) }));
  assert.equal((await bulk.verify(batch)).length, BULK_BATCH); // the whole burst
  const refusedBefore = await guarded.refused('rate_limited', 'bulk');
  const results = await bulk.verify(batch); // refused, pushback about 1 s, retried
  assert.equal(results.length, BULK_BATCH);
  assert.deepEqual(new Set(results.map((r) => r.status)), new Set(['STATUS_VALID']));
  assert.ok(
    (await guarded.refused('rate_limited', 'bulk')) >= refusedBefore + 1,
    'no refusal counted: the call was never retried',
  );
});

test('a caller not allowed is PERMISSION_DENIED at once, not retried', async () => {
  const free = asCaller('free'); // listed: the header is what decides
  const token = await mint();
  const [ok] = await free.verify([token]);
  assert.equal(ok.status, 'STATUS_VALID', ok.reason);
  const refusedBefore = await guarded.refused('not_allowed', 'other');
  // A call's own metadata replaces the client's.
  await assert.rejects(free.verify([token], { metadata: { [CALLER_HEADER]: 'stranger' } }), (error) => {
    assert.ok(error instanceof CallError);
    assert.equal(error.code, grpc.status.PERMISSION_DENIED, error.message);
    assert.match(error.details, /not allowed/);
    assert.equal(error.pushbackMs, null);
    return true;
  });
  assert.equal(await guarded.refused('not_allowed', 'other'), refusedBefore + 1, 'PERMISSION_DENIED was retried');
});

test('a batch over the caller\'s burst is RESOURCE_EXHAUSTED with pushback -1, not retried', async () => {
  const limited = asCaller('limited');
  const refusedBefore = await guarded.refused('over_burst', 'limited');
  const token = await mint();
  await assert.rejects(limited.verify([token, token, token]), (error) => {
    // burst 2: this batch can never pass
    assert.ok(error instanceof CallError);
    assert.equal(error.code, grpc.status.RESOURCE_EXHAUSTED, error.message);
    assert.equal(error.pushbackMs, -1);
    assert.match(error.details, /split the batch/);
    return true;
  });
  assert.equal(await guarded.refused('over_burst', 'limited'), refusedBefore + 1, 'retried despite a pushback of -1');
});
