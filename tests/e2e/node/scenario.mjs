// End-to-end scenario for Tidings driven by the real centrifuge-js client (npm `centrifuge`).
//
// Usage:
//   node scenario.mjs --ws-url ws://127.0.0.1:PORT/connection/websocket \
//     --api-url http://127.0.0.1:PORT/api --api-key KEY --token JWT \
//     [--user 42] [--channel e2e-xyz] [--scenario recover|force-reconnect|all] [--timeout-ms 15000]
// Every option can also come from the environment: TIDINGS_E2E_WS_URL, TIDINGS_E2E_API_URL,
// TIDINGS_E2E_API_KEY, TIDINGS_E2E_TOKEN, TIDINGS_E2E_USER, TIDINGS_E2E_CHANNEL,
// TIDINGS_E2E_SCENARIO, TIDINGS_E2E_TIMEOUT_MS.
//
// Prints exactly one JSON line to stdout ({"ok":true,...} or {"ok":false,"error":...}) and exits
// 0 on success, 1 on any failure, including the global timeout.

import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';

import { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';

const { values: argv } = parseArgs({
  options: {
    'ws-url': { type: 'string' },
    'api-url': { type: 'string' },
    'api-key': { type: 'string' },
    token: { type: 'string' },
    user: { type: 'string' },
    channel: { type: 'string' },
    scenario: { type: 'string' },
    'timeout-ms': { type: 'string' },
  },
  strict: true,
});

const env = process.env;
const opts = {
  wsUrl: argv['ws-url'] ?? env.TIDINGS_E2E_WS_URL,
  apiUrl: (argv['api-url'] ?? env.TIDINGS_E2E_API_URL ?? '').replace(/\/+$/, ''),
  apiKey: argv['api-key'] ?? env.TIDINGS_E2E_API_KEY,
  token: argv.token ?? env.TIDINGS_E2E_TOKEN,
  user: argv.user ?? env.TIDINGS_E2E_USER ?? '42',
  channel: argv.channel ?? env.TIDINGS_E2E_CHANNEL ?? `e2e-${randomBytes(6).toString('hex')}`,
  scenario: argv.scenario ?? env.TIDINGS_E2E_SCENARIO ?? 'all',
  timeoutMs: Number(argv['timeout-ms'] ?? env.TIDINGS_E2E_TIMEOUT_MS ?? 15000),
};
const STEP_TIMEOUT_MS = Math.min(8000, opts.timeoutMs);

// Everything observed goes into `result`; it is printed on success and on failure alike.
const result = {
  ok: false,
  scenario: opts.scenario,
  channel: opts.channel,
  phase: 'init',
  clientIds: [],
  connecting: [],
  disconnected: [],
  subscribed: [],
  received: [],
  apiPublishes: [],
  errors: [],
};

let finished = false;
let centrifuge = null;

function finish(ok, error) {
  if (finished) return;
  finished = true;
  result.ok = ok;
  if (error !== undefined) result.error = String(error && error.stack ? error.stack : error);
  // Serialize first: the teardown disconnect below must not show up in the results.
  const line = JSON.stringify(result) + '\n';
  try {
    if (centrifuge) centrifuge.disconnect();
  } catch {
    // ignore: we are exiting anyway
  }
  process.stdout.write(line, () => process.exit(ok ? 0 : 1));
}

const globalTimer = setTimeout(
  () => finish(false, `global timeout of ${opts.timeoutMs} ms in phase ${result.phase}`),
  opts.timeoutMs,
);
process.on('uncaughtException', (e) => finish(false, `uncaught: ${e && e.stack ? e.stack : e}`));
process.on('unhandledRejection', (e) => finish(false, `unhandled: ${e && e.stack ? e.stack : e}`));

// --- a tiny event log with "wait for the n-th matching event" --------------------------------

const events = [];
const waiters = [];

function record(type, ctx) {
  const ev = { type, ctx };
  events.push(ev);
  for (const w of [...waiters]) w.check();
}

function waitFor(label, predicate, count = 1) {
  result.phase = label;
  return new Promise((resolve, reject) => {
    const waiter = {
      check() {
        const matches = events.filter(predicate);
        if (matches.length >= count) {
          clearTimeout(timer);
          waiters.splice(waiters.indexOf(waiter), 1);
          resolve(matches[count - 1].ctx);
        }
      },
    };
    const timer = setTimeout(() => {
      waiters.splice(waiters.indexOf(waiter), 1);
      reject(new Error(`timeout after ${STEP_TIMEOUT_MS} ms waiting for: ${label}`));
    }, STEP_TIMEOUT_MS);
    waiters.push(waiter);
    waiter.check();
  });
}

const isType = (type) => (ev) => ev.type === type;
const isPubSeq = (seq) => (ev) => ev.type === 'publication' && ev.ctx.data && ev.ctx.data.seq === seq;

// --- HTTP API ---------------------------------------------------------------------------------

async function api(method, body) {
  const resp = await fetch(`${opts.apiUrl}/${method}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-API-Key': opts.apiKey },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(STEP_TIMEOUT_MS),
  });
  const text = await resp.text();
  if (resp.status !== 200) {
    throw new Error(`API ${method}: HTTP ${resp.status}: ${text}`);
  }
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`API ${method}: response is not JSON: ${text}`);
  }
  if (parsed.error) {
    throw new Error(`API ${method}: error reply ${JSON.stringify(parsed.error)}`);
  }
  if (typeof parsed.result !== 'object' || parsed.result === null) {
    throw new Error(`API ${method}: no result object in ${text}`);
  }
  return parsed.result;
}

async function publish(seq, phase) {
  const res = await api('publish', { channel: opts.channel, data: { seq, phase } });
  result.apiPublishes.push({ seq, offset: res.offset ?? null, epoch: res.epoch ?? null });
  return res;
}

// --- scenario ---------------------------------------------------------------------------------

function summarizeSubscribed(ctx) {
  return {
    recoverable: ctx.recoverable,
    positioned: ctx.positioned,
    wasRecovering: ctx.wasRecovering,
    recovered: ctx.recovered,
    hasRecoveredPublications: ctx.hasRecoveredPublications,
    offset: ctx.streamPosition ? ctx.streamPosition.offset : null,
    epoch: ctx.streamPosition ? ctx.streamPosition.epoch : null,
  };
}

async function setup() {
  for (const [name, value] of Object.entries(opts)) {
    if (value === undefined || value === '') throw new Error(`missing option ${name}`);
  }
  centrifuge = new Centrifuge(opts.wsUrl, {
    websocket: WebSocket,
    token: opts.token,
    minReconnectDelay: 50,
    maxReconnectDelay: 500,
    timeout: 5000,
  });
  centrifuge.on('connecting', (ctx) => {
    result.connecting.push({ code: ctx.code, reason: ctx.reason });
    record('connecting', ctx);
  });
  centrifuge.on('connected', (ctx) => {
    result.clientIds.push(ctx.client);
    record('connected', ctx);
  });
  centrifuge.on('disconnected', (ctx) => {
    result.disconnected.push({ code: ctx.code, reason: ctx.reason });
    record('disconnected', ctx);
  });
  centrifuge.on('error', (ctx) => {
    if (result.errors.length >= 50) return;
    result.errors.push({ type: ctx.type, code: ctx.error && ctx.error.code, message: ctx.error && ctx.error.message });
  });

  const sub = centrifuge.newSubscription(opts.channel);
  sub.on('subscribed', (ctx) => {
    result.subscribed.push(summarizeSubscribed(ctx));
    record('subscribed', ctx);
  });
  sub.on('unsubscribed', (ctx) => record('unsubscribed', ctx));
  sub.on('error', (ctx) => {
    if (result.errors.length >= 50) return;
    result.errors.push({ type: `sub:${ctx.type}`, code: ctx.error && ctx.error.code, message: ctx.error && ctx.error.message });
  });
  sub.on('publication', (ctx) => {
    result.received.push({ data: ctx.data, offset: ctx.offset ?? null });
    record('publication', ctx);
  });

  sub.subscribe();
  centrifuge.connect();
  await waitFor('first connect', isType('connected'), 1);
  const first = await waitFor('first subscribe', isType('subscribed'), 1);
  if (first.wasRecovering !== false) throw new Error('first subscribe must not be recovering');
  if (first.recoverable !== true) throw new Error('channel with force_recovery must be recoverable');

  await publish(0, 'live');
  await waitFor('live publication seq=0', isPubSeq(0));
  return sub;
}

async function scenarioForceReconnect() {
  // The server closes the transport with 3011 (a reconnect code): the client must reconnect by
  // itself and resubscribe with recovery (nothing was missed, so recovered=true, no pubs).
  const nConnected = events.filter(isType('connected')).length;
  const nSubscribed = events.filter(isType('subscribed')).length;
  result.forceDisconnectReply = await api('disconnect', {
    user: opts.user,
    disconnect: { code: 3011, reason: 'force reconnect' },
  });
  const connecting = await waitFor(
    'connecting after API disconnect 3011',
    (ev) => ev.type === 'connecting' && ev.ctx.code === 3011,
  );
  result.forceReconnect = { code: connecting.code, reason: connecting.reason };
  await waitFor('reconnected after 3011', isType('connected'), nConnected + 1);
  const ctx = await waitFor('resubscribed after 3011', isType('subscribed'), nSubscribed + 1);
  result.forceReconnect.subscribed = summarizeSubscribed(ctx);
  await publish(10, 'after-force-reconnect');
  await waitFor('live publication after forced reconnect', isPubSeq(10));
}

async function scenarioRecover() {
  // The client goes away (no reconnect), 3 publications happen, the client comes back: the
  // subscription must recover exactly those 3, in order, then live delivery continues.
  const nConnected = events.filter(isType('connected')).length;
  const nSubscribed = events.filter(isType('subscribed')).length;
  const nDisconnected = events.filter(isType('disconnected')).length;
  centrifuge.disconnect();
  await waitFor('disconnected by client', isType('disconnected'), nDisconnected + 1);
  for (const seq of [1, 2, 3]) {
    await publish(seq, 'away');
  }
  centrifuge.connect();
  await waitFor('reconnected after client disconnect', isType('connected'), nConnected + 1);
  const ctx = await waitFor('resubscribed with recovery', isType('subscribed'), nSubscribed + 1);
  const sub = summarizeSubscribed(ctx);
  result.recovery = sub;
  result.wasRecovering = sub.wasRecovering;
  result.recovered = sub.recovered;
  for (const seq of [1, 2, 3]) {
    await waitFor(`recovered publication seq=${seq}`, isPubSeq(seq));
  }
  // A live publication after recovery: everything before it must already have arrived, so the
  // full received list is final once it shows up (no sleeping to rule out duplicates).
  await publish(4, 'after-recovery');
  await waitFor('live publication seq=4 after recovery', isPubSeq(4));
}

async function main() {
  await setup();
  if (opts.scenario === 'force-reconnect' || opts.scenario === 'all') {
    await scenarioForceReconnect();
  }
  if (opts.scenario === 'recover' || opts.scenario === 'all') {
    await scenarioRecover();
  }
  if (!['force-reconnect', 'recover', 'all'].includes(opts.scenario)) {
    throw new Error(`unknown scenario ${opts.scenario}`);
  }
  result.phase = 'done';
  clearTimeout(globalTimer);
  finish(true);
}

main().catch((e) => finish(false, e));
