// jwtd against tokens minted by `jose`, over real gRPC with @grpc/grpc-js.
//
// jose is an implementation independent of jwtd: these tests check that the
// two agree on what is VALID and on the reason code of each rejection.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import protoLoader from '@grpc/proto-loader';
import { decodeProtectedHeader, importPKCS8, SignJWT, UnsecuredJWT } from 'jose';

import { CallError, grpc, JwtdClient, loadJwtdProto } from '../src/client.js';
import {
  AUDIENCE,
  HMAC_ISSUER,
  ISSUER,
  KEYS,
  MAX_BATCH,
  SLOW_ISSUER,
  startJwtd,
  TYPED_ISSUER,
} from './jwtd-server.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));

const pem = (name) => readFileSync(path.join(KEYS, `${name}.pem`), 'utf8');
const hmacSecret = () =>
  Buffer.from(JSON.parse(readFileSync(path.join(KEYS, 'jwks-hmac.json'), 'utf8')).keys[0].k, 'base64url');

/**
 * Signs a token with jose; defaults: RS256 by rsa2048 for ISSUER and
 * AUDIENCE, 5 min, no typ in the header (jose adds none unless asked).
 */
async function mint({
  keyName = 'rsa2048',
  alg = 'RS256',
  kid = keyName,
  typ,
  key,
  iss = ISSUER,
  aud = AUDIENCE,
  expIn = 300,
  claims = {},
} = {}) {
  const now = Math.floor(Date.now() / 1000);
  const signingKey = key ?? (await importPKCS8(pem(keyName), alg));
  const header = kid === null ? { alg } : { alg, kid };
  if (typ !== undefined) header.typ = typ;
  return new SignJWT(claims)
    .setProtectedHeader(header)
    .setIssuer(iss)
    .setAudience(aud)
    .setSubject('alice')
    .setIssuedAt(now)
    .setExpirationTime(now + expIn)
    .sign(signingKey);
}

let jwtd;
let client;

before(async () => {
  jwtd = await startJwtd();
  client = new JwtdClient(jwtd.address, { timeoutMs: 10_000 });
});

after(async () => {
  client?.close();
  await jwtd?.stop();
});

describe('VALID tokens', () => {
  for (const [keyName, alg] of [
    ['rsa2048', 'RS256'],
    ['rsa3072', 'RS512'],
    ['rsa2048', 'PS256'],
    ['p256', 'ES256'],
    ['p384', 'ES384'],
    ['p521', 'ES512'],
    ['ed25519', 'EdDSA'],
  ]) {
    test(`${alg} by ${keyName}`, async () => {
      const token = await mint({ keyName, alg, claims: { scope: 'read write' } });
      const [result] = await client.verify([token]);
      assert.equal(result.status, 'STATUS_VALID', result.reason);
      assert.equal(result.valid, true);
      assert.equal(result.claims.issuer, ISSUER);
      assert.equal(result.claims.subject, 'alice');
      assert.deepEqual(result.claims.audiences, [AUDIENCE]);
      assert.equal(result.claims.keyId, keyName);
      assert.equal(result.claims.algorithm, alg);
      assert.ok(result.claims.expiresAt > Date.now() / 1000);
      assert.deepEqual(result.claims.payloadJson, Buffer.from(token.split('.')[1], 'base64url'));
      assert.equal(JSON.parse(result.claims.payloadJson).scope, 'read write');
    });
  }

  test('HS256 by the shared secret', async () => {
    const token = await mint({ alg: 'HS256', kid: 'hs', key: hmacSecret(), iss: HMAC_ISSUER });
    const [result] = await client.verify([token]);
    assert.equal(result.status, 'STATUS_VALID', result.reason);
    assert.equal(result.claims.algorithm, 'HS256');
  });

  test('no kid: the key is found by algorithm', async () => {
    const [result] = await client.verify([await mint({ keyName: 'p256', alg: 'ES256', kid: null })]);
    assert.equal(result.status, 'STATUS_VALID', result.reason);
    assert.equal(result.claims.keyId, '');
  });
});

describe('rejections', () => {
  const rejected = async (token, opts) => {
    const [result] = await client.verify([token], opts);
    assert.notEqual(result.reason, '');
    assert.equal(result.claims, null);
    assert.equal(result.valid, false);
    return result.status;
  };

  test('expired', async () => {
    assert.equal(await rejected(await mint({ expIn: -3600 })), 'STATUS_EXPIRED');
  });

  test('wrong audience', async () => {
    assert.equal(await rejected(await mint({ aud: 'billing-api' })), 'STATUS_AUDIENCE_MISMATCH');
  });

  test('a requested audience narrows the configured ones', async () => {
    const token = await mint();
    const [ok] = await client.verify([token], { audiences: [AUDIENCE] });
    assert.equal(ok.status, 'STATUS_VALID', ok.reason);
    assert.equal(await rejected(token, { audiences: ['billing-api'] }), 'STATUS_AUDIENCE_MISMATCH');
  });

  test('wrong issuer', async () => {
    assert.equal(await rejected(await mint({ iss: 'https://evil.test' })), 'STATUS_ISSUER_NOT_TRUSTED');
  });

  test('issuer filter', async () => {
    assert.equal(await rejected(await mint(), { issuer: HMAC_ISSUER }), 'STATUS_ISSUER_NOT_TRUSTED');
  });

  test('bad signature: signed by another key than its kid names', async () => {
    const key = await importPKCS8(pem('rsa3072'), 'RS256');
    assert.equal(await rejected(await mint({ key, kid: 'rsa2048' })), 'STATUS_BAD_SIGNATURE');
  });

  test('bad signature: payload altered after signing', async () => {
    const [header, , signature] = (await mint()).split('.');
    const now = Math.floor(Date.now() / 1000);
    const forged = Buffer.from(JSON.stringify({ iss: ISSUER, aud: AUDIENCE, sub: 'mallory', exp: now + 300 }));
    const token = `${header}.${forged.toString('base64url')}.${signature}`;
    assert.equal(await rejected(token), 'STATUS_BAD_SIGNATURE');
  });

  test('unknown kid', async () => {
    assert.equal(await rejected(await mint({ kid: 'rotated-away' })), 'STATUS_UNKNOWN_KEY');
  });

  test('alg none', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = new UnsecuredJWT({ sub: 'alice' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setExpirationTime(now + 300)
      .encode();
    assert.ok(token.endsWith('.'), token); // jose's unsecured JWS: empty signature
    assert.equal(await rejected(token), 'STATUS_UNSUPPORTED_ALGORITHM');
  });
});

describe('required scopes', () => {
  for (const [name, grant] of [
    ['scope string', { scope: 'read write' }],
    ['scp array', { scp: ['read', 'write'] }],
  ]) {
    test(`${name}: granted scopes pass, a missing one is INSUFFICIENT_SCOPE naming it`, async () => {
      const token = await mint({ claims: grant });
      const [read] = await client.verify([token], { requiredScopes: ['read'] });
      assert.equal(read.status, 'STATUS_VALID', read.reason);
      const [both] = await client.verify([token], { requiredScopes: ['read', 'write'] });
      assert.equal(both.status, 'STATUS_VALID', both.reason);
      const [admin] = await client.verify([token], { requiredScopes: ['admin'] });
      assert.equal(admin.status, 'STATUS_INSUFFICIENT_SCOPE');
      assert.equal(admin.valid, false);
      assert.equal(admin.claims, null);
      assert.match(admin.reason, /\badmin\b/);
      const [some] = await client.verify([token], { requiredScopes: ['read', 'admin'] });
      assert.equal(some.status, 'STATUS_INSUFFICIENT_SCOPE');
      assert.match(some.reason, /\badmin\b/);
      assert.doesNotMatch(some.reason, /\bread\b/);
    });
  }

  test('a required scope with whitespace is an INVALID_ARGUMENT call error', async () => {
    const token = await mint({ claims: { scope: 'read write' } });
    await assert.rejects(client.verify([token], { requiredScopes: ['read write'] }), (error) => {
      assert.ok(error instanceof CallError);
      assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
      assert.match(error.details, /required_scopes\[0\]/);
      return true;
    });
  });
});

describe('token types', () => {
  test('an issuer with types = ["at+jwt"] rejects typ "JWT" and accepts typ "at+jwt"', async () => {
    const jwtTyp = await mint({ iss: TYPED_ISSUER, typ: 'JWT' });
    assert.equal(decodeProtectedHeader(jwtTyp).typ, 'JWT');
    const [rejected] = await client.verify([jwtTyp]);
    assert.equal(rejected.status, 'STATUS_TYPE_NOT_ALLOWED');
    assert.match(rejected.reason, /"JWT"/);
    const [access] = await client.verify([await mint({ iss: TYPED_ISSUER, typ: 'at+jwt' })]);
    assert.equal(access.status, 'STATUS_VALID', access.reason);
    // An issuer without `types` accepts either.
    const untyped = await client.verify([await mint({ typ: 'at+jwt' }), await mint({ typ: 'JWT' })]);
    assert.deepEqual(untyped.map((r) => r.status), ['STATUS_VALID', 'STATUS_VALID']);
  });

  test('the proto read at run time names every status', () => {
    const { Status } = loadJwtdProto();
    const values = Object.fromEntries(Status.type.value.map((v) => [v.number, v.name]));
    assert.equal(values[12], 'STATUS_REVOKED');
    assert.equal(values[14], 'STATUS_TYPE_NOT_ALLOWED');
    assert.equal(values[15], 'STATUS_INSUFFICIENT_SCOPE');
    assert.equal(values[16], 'STATUS_CLIENT_NOT_ALLOWED');
  });
});

describe('batches', () => {
  test('results keep request order', async () => {
    const tokens = [await mint(), await mint({ expIn: -3600 }), 'not-a-token', await mint({ keyName: 'p256', alg: 'ES256' })];
    const statuses = (await client.verify(tokens)).map((r) => r.status);
    assert.deepEqual(statuses, ['STATUS_VALID', 'STATUS_EXPIRED', 'STATUS_MALFORMED', 'STATUS_VALID']);
  });

  test('an empty batch has no results', async () => {
    assert.deepEqual(await client.verify([]), []);
  });

  test('a batch over limits.max_batch is an INVALID_ARGUMENT call error', async () => {
    const token = await mint();
    assert.equal((await client.verify(Array(MAX_BATCH).fill(token))).length, MAX_BATCH);
    await assert.rejects(client.verify(Array(MAX_BATCH + 1).fill(token)), (error) => {
      assert.ok(error instanceof CallError);
      assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
      assert.match(error.details, new RegExp(`limit of ${MAX_BATCH}\\b`));
      return true;
    });
  });

  test('an issuer filter naming no configured issuer is an INVALID_ARGUMENT call error', async () => {
    await assert.rejects(client.verify([await mint()], { issuer: 'https://nobody.test' }), (error) => {
      assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
      return true;
    });
  });
});

describe('deadlines and failures', () => {
  test('a call outliving its deadline is DEADLINE_EXCEEDED, and the channel stays usable', async () => {
    // The slow issuer's JWKS server hangs on every fetch after the first, so
    // an unknown kid makes jwtd wait (kid_miss_wait_ms = 30 s) for a refresh
    // that never comes; the call's 0.5 s deadline passes first.
    const [loaded] = await client.verify([await mint({ iss: SLOW_ISSUER })]);
    assert.equal(loaded.status, 'STATUS_VALID', loaded.reason);
    const waiting = await mint({ iss: SLOW_ISSUER, kid: 'not-yet-published' });
    await assert.rejects(client.verify([waiting], { timeoutMs: 500 }), (error) => {
      assert.ok(error instanceof CallError);
      assert.equal(error.code, grpc.status.DEADLINE_EXCEEDED, error.message);
      return true;
    });
    const [next] = await client.verify([await mint()]);
    assert.equal(next.status, 'STATUS_VALID', next.reason);
  });

  test('an unreachable jwtd is UNAVAILABLE', async () => {
    const port = await new Promise((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address();
        probe.close(() => resolve(port)); // now nothing listens there
      });
    });
    const unreachable = new JwtdClient(`127.0.0.1:${port}`, { timeoutMs: 20_000 });
    try {
      await assert.rejects(unreachable.verify([await mint()]), (error) => {
        assert.equal(error.code, grpc.status.UNAVAILABLE, error.message);
        return true;
      });
    } finally {
      unreachable.close();
    }
  });
});

describe('server reflection (grpc.reflection.v1)', () => {
  /** One request on the bidirectional reflection stream; its response. */
  function reflect(request) {
    const definition = protoLoader.loadSync(path.join(HERE, 'reflection-v1-subset.proto'), { keepCase: true, oneofs: true });
    const { ServerReflection } = grpc.loadPackageDefinition(definition).grpc.reflection.v1;
    const stub = new ServerReflection(jwtd.address, grpc.credentials.createInsecure());
    return new Promise((resolve, reject) => {
      const call = stub.ServerReflectionInfo({ deadline: Date.now() + 10_000 });
      call.on('data', (response) => {
        resolve(response);
        call.end();
      });
      call.on('error', reject);
      call.on('end', () => stub.close());
      call.write(request);
    });
  }

  test('lists jwtd.v1.VerifierService and grpc.health.v1.Health', async () => {
    const response = await reflect({ list_services: '' });
    const names = response.list_services_response.service.map((s) => s.name);
    assert.ok(names.includes('jwtd.v1.VerifierService'), names.join(', '));
    assert.ok(names.includes('grpc.health.v1.Health'), names.join(', '));
  });

  test('describes Verify well enough to call it without a proto file', async () => {
    const response = await reflect({ file_containing_symbol: 'jwtd.v1.VerifierService' });
    assert.equal(response.message_response, 'file_descriptor_response');
    // A FileDescriptorSet is its files as repeated field 1: tag, length, bytes.
    const set = Buffer.concat(
      response.file_descriptor_response.file_descriptor_proto.map((file) =>
        Buffer.concat([Buffer.from([0x0a]), varint(file.length), file]),
      ),
    );
    const definition = protoLoader.loadFileDescriptorSetFromBuffer(set, { enums: String });
    const { VerifierService } = grpc.loadPackageDefinition(definition).jwtd.v1;
    assert.equal(VerifierService.service.Verify.path, '/jwtd.v1.VerifierService/Verify');
    const stub = new VerifierService(jwtd.address, grpc.credentials.createInsecure());
    const token = await mint();
    const response2 = await new Promise((resolve, reject) =>
      stub.Verify({ tokens: [token] }, { deadline: Date.now() + 10_000 }, (e, r) => (e ? reject(e) : resolve(r))),
    );
    stub.close();
    assert.equal(response2.results[0].status, 'STATUS_VALID', response2.results[0].reason);
  });
});

describe('the example', () => {
  test('prints one line per token with its reason', async () => {
    const tokens = [await mint(), await mint({ expIn: -3600 }), await mint({ kid: 'rotated-away' })];
    const example = path.join(HERE, '../examples/verify-batch.js');
    const run = await promisify(execFile)(process.execPath, [example, '--target', jwtd.address, ...tokens]).then(
      (r) => ({ code: 0, ...r }),
      (e) => e,
    );
    assert.equal(run.code, 1, run.stderr);
    const lines = run.stdout.trim().split('\n');
    assert.match(lines[0], /^0: VALID sub=alice /);
    assert.match(lines[1], /^1: EXPIRED: ./);
    assert.match(lines[2], /^2: UNKNOWN_KEY: ./);
  });

  test('passes --scope as requiredScopes', async () => {
    const tokens = [await mint({ claims: { scope: 'read write' } }), await mint({ claims: { scope: 'read' } })];
    const example = path.join(HERE, '../examples/verify-batch.js');
    const run = await promisify(execFile)(process.execPath, [example, '--target', jwtd.address, '--scope', 'write', ...tokens]).then(
      (r) => ({ code: 0, ...r }),
      (e) => e,
    );
    assert.equal(run.code, 1, run.stderr);
    const lines = run.stdout.trim().split('\n');
    assert.match(lines[0], /^0: VALID sub=alice /);
    assert.equal(lines[1], '1: INSUFFICIENT_SCOPE: missing scope write');
  });
});

function varint(n) {
  const bytes = [];
  while (n > 0x7f) {
    bytes.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  bytes.push(n);
  return Buffer.from(bytes);
}
