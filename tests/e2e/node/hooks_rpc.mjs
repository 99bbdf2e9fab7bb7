// RPC through Tidings' rpc hook, driven by the real centrifuge-js client (npm `centrifuge`) over
// WebSocket: connect with a token, call `math:sum` (answered by the backend) and a method the
// backend refuses, and report both.
//
// Usage:
//   node hooks_rpc.mjs --ws-url ws://127.0.0.1:PORT/connection/websocket --token JWT \
//     [--timeout-ms 15000]
// The options can also come from the environment: TIDINGS_E2E_WS_URL, TIDINGS_E2E_TOKEN,
// TIDINGS_E2E_TIMEOUT_MS.
//
// Prints exactly one JSON line to stdout and exits 0 when every step ran (whatever the
// server answered), 1 on a failure or the global timeout:
//   {"ok":true,"client":"<id>","sum":{"sum":9},"refused":{"code":104,"message":"..."}}
//   {"ok":false,"phase":"...","error":"..."}

import { parseArgs } from 'node:util';

import { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';

const { values: argv } = parseArgs({
  options: {
    'ws-url': { type: 'string' },
    token: { type: 'string' },
    'timeout-ms': { type: 'string' },
  },
  strict: true,
});
const env = process.env;
const wsUrl = argv['ws-url'] ?? env.TIDINGS_E2E_WS_URL;
const token = argv.token ?? env.TIDINGS_E2E_TOKEN ?? '';
const timeoutMs = Number(argv['timeout-ms'] ?? env.TIDINGS_E2E_TIMEOUT_MS ?? 15000);

const result = { ok: false, phase: 'init' };
let client = null;
let finished = false;

function finish(ok, error) {
  if (finished) return;
  finished = true;
  result.ok = ok;
  if (error !== undefined) result.error = String(error && error.stack ? error.stack : error);
  try {
    if (client) client.disconnect();
  } catch {
    // exiting anyway
  }
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(ok ? 0 : 1));
}

setTimeout(() => finish(false, `global timeout of ${timeoutMs} ms in phase ${result.phase}`),
  timeoutMs);
process.on('uncaughtException', (e) => finish(false, `uncaught: ${e && e.stack ? e.stack : e}`));
process.on('unhandledRejection', (e) => finish(false, `unhandled: ${e && e.stack ? e.stack : e}`));

// The rpc promise rejects with the reply's error object ({code, message[, temporary]}).
function replyError(e) {
  if (e && typeof e === 'object' && 'code' in e) {
    return { code: e.code, message: e.message, temporary: e.temporary ?? false };
  }
  throw e;
}

async function main() {
  if (!wsUrl) throw new Error('--ws-url (or TIDINGS_E2E_WS_URL) is required');
  client = new Centrifuge(wsUrl, { token, websocket: WebSocket, timeout: 5000 });
  result.phase = 'connect';
  const connected = new Promise((resolve, reject) => {
    client.once('connected', resolve);
    client.once('disconnected', (ctx) => reject(new Error(`disconnected: ${JSON.stringify(ctx)}`)));
  });
  client.connect();
  result.client = (await connected).client;

  result.phase = 'rpc math:sum';
  result.sum = (await client.rpc('math:sum', { numbers: [4, 5] })).data;

  result.phase = 'rpc refused';
  try {
    result.refusedData = (await client.rpc('nosuch', {})).data;
  } catch (e) {
    result.refused = replyError(e);
  }
  result.phase = 'done';
}

main().then(() => finish(true), (e) => finish(false, e));
