// End-to-end scenario for Tidings driven by the real centrifuge-js client (npm `centrifuge`).
//
// Usage:
//   node scenario.mjs --ws-url ws://127.0.0.1:PORT/connection/websocket \
//     --api-url http://127.0.0.1:PORT/api --api-key KEY --token JWT \
//     [--transport websocket|http_stream|sse|sockjs] [--http-stream-url URL] [--sse-url URL] \
//     [--emulation-url URL] [--user 42] [--channel e2e-xyz] \
//     [--scenario recover|force-reconnect|all] [--timeout-ms 15000] [--trace]
// Every option can also come from the environment: TIDINGS_E2E_WS_URL, TIDINGS_E2E_API_URL,
// TIDINGS_E2E_API_KEY, TIDINGS_E2E_TOKEN, TIDINGS_E2E_TRANSPORT, TIDINGS_E2E_HTTP_STREAM_URL,
// TIDINGS_E2E_SSE_URL, TIDINGS_E2E_EMULATION_URL, TIDINGS_E2E_USER, TIDINGS_E2E_CHANNEL,
// TIDINGS_E2E_SCENARIO, TIDINGS_E2E_TIMEOUT_MS, TIDINGS_E2E_TRACE=1.
//
// Transports: `websocket` (default; `ws` as the WebSocket implementation) or one of the
// bidirectional emulation transports, `http_stream` (fetch + ReadableStream) and `sse`
// (EventSource from the npm `eventsource` package: Node has no global one); both send their
// commands with POST to the emulation endpoint. The http_stream, SSE and emulation URLs default
// to /connection/http_stream, /connection/sse and /emulation below --api-url minus /api.
// With --trace, the client's debug log and every HTTP request of the emulation transports (method,
// URL, body, status; and each line of the streamed responses) go to stderr.
//
// Prints exactly one JSON line to stdout ({"ok":true,...} or {"ok":false,"error":...}) and exits
// 0 on success, 1 on any failure, including the global timeout.

import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';

import { Centrifuge } from 'centrifuge';
import { EventSource } from 'eventsource';
import SockJS from 'sockjs-client';
import WebSocket from 'ws';

const { values: argv } = parseArgs({
  options: {
    transport: { type: 'string' },
    'ws-url': { type: 'string' },
    'http-stream-url': { type: 'string' },
    'sse-url': { type: 'string' },
    'emulation-url': { type: 'string' },
    'api-url': { type: 'string' },
    'api-key': { type: 'string' },
    token: { type: 'string' },
    user: { type: 'string' },
    channel: { type: 'string' },
    scenario: { type: 'string' },
    'timeout-ms': { type: 'string' },
    trace: { type: 'boolean' },
  },
  strict: true,
});

const env = process.env;
const TRANSPORTS = ['websocket', 'http_stream', 'sse', 'sockjs'];
const transport = argv.transport ?? env.TIDINGS_E2E_TRANSPORT ?? 'websocket';
const apiUrl = (argv['api-url'] ?? env.TIDINGS_E2E_API_URL ?? '').replace(/\/+$/, '');
// The server's routes: below --api-url minus /api (its origin, or a prefix where it is mounted).
const base = URL.canParse(apiUrl) ? apiUrl.replace(/\/api$/, '') : '';
const opts = {
  transport,
  apiUrl,
  apiKey: argv['api-key'] ?? env.TIDINGS_E2E_API_KEY,
  token: argv.token ?? env.TIDINGS_E2E_TOKEN,
  user: argv.user ?? env.TIDINGS_E2E_USER ?? '42',
  channel: argv.channel ?? env.TIDINGS_E2E_CHANNEL ?? `e2e-${randomBytes(6).toString('hex')}`,
  scenario: argv.scenario ?? env.TIDINGS_E2E_SCENARIO ?? 'all',
  timeoutMs: Number(argv['timeout-ms'] ?? env.TIDINGS_E2E_TIMEOUT_MS ?? 15000),
};
// Only the URLs of the chosen transport are required.
if (transport === 'websocket') {
  opts.wsUrl = argv['ws-url'] ?? env.TIDINGS_E2E_WS_URL;
} else if (transport === 'sockjs') {
  // SockJS forced to long polling (xhr-polling): the fallback when nothing streams.
  opts.endpointUrl = `${base}/connection/sockjs`;
} else {
  opts.endpointUrl =
    transport === 'sse'
      ? (argv['sse-url'] ?? env.TIDINGS_E2E_SSE_URL ?? `${base}/connection/sse`)
      : (argv['http-stream-url'] ?? env.TIDINGS_E2E_HTTP_STREAM_URL ?? `${base}/connection/http_stream`);
  opts.emulationUrl = argv['emulation-url'] ?? env.TIDINGS_E2E_EMULATION_URL ?? `${base}/emulation`;
}
const trace = argv.trace === true || env.TIDINGS_E2E_TRACE === '1';
const STEP_TIMEOUT_MS = Math.min(8000, opts.timeoutMs);

// Everything observed goes into `result`; it is printed on success and on failure alike.
const result = {
  ok: false,
  scenario: opts.scenario,
  transport: opts.transport,
  channel: opts.channel,
  phase: 'init',
  clientIds: [],
  connectedTransports: [],
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

// --- tracing (stderr) -------------------------------------------------------------------------

function traceLog(...args) {
  if (trace) console.error('[trace]', ...args);
}

// A fetch that logs what the client sends and what the server answers; a streamed response body
// is teed so that each received line is logged too.
async function tracedFetch(input, init = {}) {
  const url = String(input instanceof Request ? input.url : input);
  const method = init.method ?? 'GET';
  traceLog('->', method, url, typeof init.body === 'string' ? init.body : '');
  let resp;
  try {
    resp = await fetch(input, init);
  } catch (e) {
    traceLog('x ', method, url, String(e));
    throw e;
  }
  traceLog('<-', resp.status, method, url, resp.headers.get('content-type') ?? '');
  if (!resp.body || resp.status === 204) return resp;
  const [mine, theirs] = resp.body.tee();
  (async () => {
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for await (const part of mine) {
        buf += decoder.decode(part, { stream: true });
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.trim()) traceLog('<<', url, line);
        }
      }
      traceLog('<< end of body', url, buf);
    } catch (e) {
      traceLog('<< body error', url, String(e));
    }
  })();
  return new Response(theirs, { status: resp.status, statusText: resp.statusText, headers: resp.headers });
}

class TracedEventSource extends EventSource {
  constructor(url, init = {}) {
    super(url, { ...init, fetch: tracedFetch });
  }
}

// The Centrifuge constructor arguments for the chosen transport.
function clientArgs() {
  const common = {
    token: opts.token,
    minReconnectDelay: 50,
    maxReconnectDelay: 500,
    timeout: 5000,
    debug: trace,
  };
  if (opts.transport === 'websocket') {
    return [opts.wsUrl, { ...common, websocket: WebSocket }];
  }
  if (opts.transport === 'sockjs') {
    return [
      [{ transport: 'sockjs', endpoint: opts.endpointUrl }],
      { ...common, sockjs: SockJS, sockjsOptions: { transports: ['xhr-polling'] } },
    ];
  }
  return [
    [{ transport: opts.transport, endpoint: opts.endpointUrl }],
    {
      ...common,
      emulationEndpoint: opts.emulationUrl,
      fetch: trace ? tracedFetch : fetch,
      readableStream: ReadableStream,
      eventsource: trace ? TracedEventSource : EventSource,
    },
  ];
}

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

function summarizePresence(res) {
  return Object.entries(res.clients)
    .map(([key, info]) => ({ key, client: info.client, user: info.user }))
    .sort((a, b) => (a.client < b.client ? -1 : a.client > b.client ? 1 : 0));
}

// Presence, presence stats and history through the client (the transport under test), while
// subscribed: `presence` must hold this connection, history every publication so far.
async function checkPresenceAndHistory(sub, key) {
  result.phase = `presence and history (${key})`;
  const presence = summarizePresence(await sub.presence());
  const stats = await sub.presenceStats();
  const history = await sub.history({ limit: -1 });
  result[key] = {
    presence,
    presenceStats: { numClients: stats.numClients, numUsers: stats.numUsers },
    history: {
      publications: history.publications.map((p) => ({ data: p.data, offset: p.offset ?? null })),
      offset: history.offset,
      epoch: history.epoch,
    },
  };
}

async function setup() {
  if (!TRANSPORTS.includes(opts.transport)) throw new Error(`unknown transport ${opts.transport}`);
  for (const [name, value] of Object.entries(opts)) {
    if (value === undefined || value === '') throw new Error(`missing option ${name}`);
  }
  if (trace) console.debug = (...args) => console.error('[debug]', ...args);
  centrifuge = new Centrifuge(...clientArgs());
  centrifuge.on('connecting', (ctx) => {
    result.connecting.push({ code: ctx.code, reason: ctx.reason });
    record('connecting', ctx);
  });
  centrifuge.on('connected', (ctx) => {
    result.clientIds.push(ctx.client);
    result.connectedTransports.push(ctx.transport);
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
  await checkPresenceAndHistory(sub, 'afterFirstPublication');
  return sub;
}

async function scenarioForceReconnect() {
  // The server closes the transport with 3011 (a reconnect code): the client must reconnect by
  // itself and resubscribe with recovery (nothing was missed, so recovered=true, no pubs).
  // The same for every transport: on a WebSocket the server sends the disconnect push and a
  // close frame with 3011; on http_stream/SSE, which have no close code, the disconnect push
  // ({"push":{"disconnect":{"code":3011,...}}}) is the last message of the stream, then the
  // response ends. Either way the client must see code 3011 and reconnect on its own.
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
  // The drop is the client's own disconnect() for every transport: it closes the WebSocket, aborts
  // the http_stream fetch (the server sees the TCP connection end) or closes the EventSource;
  // a server-initiated drop is what the force-reconnect scenario covers.
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

// After a reconnect the presence must end up holding only the current connection: the previous
// one is removed when the server sees it go, which may happen a moment after the new one joined
// (e.g. the end of an aborted HTTP request), so poll for a bounded time.
async function waitForPresence(sub) {
  result.phase = 'presence holds only the current connection';
  const current = result.clientIds[result.clientIds.length - 1];
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  for (;;) {
    const presence = summarizePresence(await sub.presence());
    if (presence.length === 1 && presence[0].client === current) return;
    if (Date.now() > deadline) {
      throw new Error(`presence never held only ${current}: ${JSON.stringify(presence)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function main() {
  const sub = await setup();
  if (opts.scenario === 'force-reconnect' || opts.scenario === 'all') {
    await scenarioForceReconnect();
  }
  if (opts.scenario === 'recover' || opts.scenario === 'all') {
    await scenarioRecover();
  }
  await waitForPresence(sub);
  await checkPresenceAndHistory(sub, 'atEnd');
  if (!['force-reconnect', 'recover', 'all'].includes(opts.scenario)) {
    throw new Error(`unknown scenario ${opts.scenario}`);
  }
  result.phase = 'done';
  clearTimeout(globalTimer);
  finish(true);
}

main().catch((e) => finish(false, e));
