#!/usr/bin/env node
// Verifies a batch of tokens with jwtd and prints one line per token.
//
//   node examples/verify-batch.js --target 127.0.0.1:50051 TOKEN [TOKEN ...]
//   ... | node examples/verify-batch.js -        # one token a line on stdin
//
// Exits 0 when every token is VALID, 1 when any is not, 2 when the call failed.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { CallError, grpc, JwtdClient } from '../src/client.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    target: { type: 'string', default: '127.0.0.1:50051' },
    audience: { type: 'string', multiple: true, default: [] },
    issuer: { type: 'string', default: '' },
    scope: { type: 'string', multiple: true, default: [] },
    'timeout-ms': { type: 'string', default: '2000' },
  },
});

let tokens = positionals;
if (tokens.length === 1 && tokens[0] === '-') {
  tokens = readFileSync(0, 'utf8').split('\n').map((l) => l.trim()).filter(Boolean);
}

const jwtd = new JwtdClient(values.target, { timeoutMs: Number(values['timeout-ms']) });
try {
  const results = await jwtd.verify(tokens, {
    audiences: values.audience,
    issuer: values.issuer,
    requiredScopes: values.scope,
  });
  results.forEach((r, i) => {
    if (r.valid) {
      console.log(`${i}: VALID sub=${r.claims.subject} iss=${r.claims.issuer} alg=${r.claims.algorithm}`);
    } else {
      console.log(`${i}: ${r.status.replace(/^STATUS_/, '')}: ${r.reason}`);
    }
  });
  process.exitCode = results.every((r) => r.valid) ? 0 : 1;
} catch (error) {
  if (!(error instanceof CallError)) throw error;
  console.error(`call failed: ${grpc.status[error.code]}: ${error.details}`);
  process.exitCode = 2;
} finally {
  jwtd.close();
}
