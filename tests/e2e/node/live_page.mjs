// The page script of the example apps (examples/static/live.js) under Node with the real
// centrifuge-js: render the page as the logged-in browser would (its Cookie header), post a
// comment after the render and before subscribing, subscribe from the rendered position, then
// post another; report what arrived.
//
// Usage:
//   node live_page.mjs --site-url http://127.0.0.1:PORT --cookie 'sessionid=...; csrftoken=...'
//     [--csrf-field csrfmiddlewaretoken] [--timeout-ms 15000]
//
// Prints exactly one JSON line and exits 0 when every step ran, 1 otherwise:
//   {"ok":true,"received":["in the gap","live"],"recovered":true,"resyncs":0}
//   {"ok":false,"phase":"...","error":"..."}

import { parseArgs } from 'node:util';

import { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';

import { subscribeLive } from '../../../examples/static/live.js';

const { values: argv } = parseArgs({
  options: {
    'site-url': { type: 'string' },
    cookie: { type: 'string' },
    'csrf-field': { type: 'string' },
    'timeout-ms': { type: 'string' },
  },
  strict: true,
});
const site = argv['site-url'];
const cookie = argv.cookie ?? '';
const csrfField = argv['csrf-field'] ?? 'csrfmiddlewaretoken';
const timeoutMs = Number(argv['timeout-ms'] ?? 15000);
const result = { ok: false, phase: 'init', received: [], resyncs: 0 };
let client = null;

function finish(ok, error) {
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
process.on('unhandledRejection', (e) => finish(false, `unhandled: ${e && e.stack ? e.stack : e}`));

// The browser's fetch on this site: its cookies, redirects not followed.
function siteFetch(path, init = {}) {
  return fetch(new URL(path, site), { ...init, redirect: 'manual',
                                      headers: { ...(init.headers ?? {}), Cookie: cookie } });
}

async function post(text, csrf) {
  const body = new URLSearchParams({ text });
  if (csrf) body.set(csrfField, csrf);
  const res = await siteFetch('/comments', { method: 'POST', body });
  if (res.status !== 302 && res.status !== 303) throw new Error(`post ${text}: ${res.status}`);
}

async function main() {
  result.phase = 'render';
  const page = await (await siteFetch('/')).text();
  const found = page.match(/<script id="live" type="application\/json">(.*?)<\/script>/s);
  if (!found) throw new Error(`no live JSON in the page: ${page.slice(0, 500)}`);
  const live = JSON.parse(found[1]);
  const csrf = (page.match(new RegExp(`name="${csrfField}" value="([^"]+)"`)) ?? [])[1];

  result.phase = 'post in the gap';
  await post('in the gap', csrf);

  result.phase = 'subscribe';
  let gotLive;
  const liveArrived = new Promise((resolve) => { gotLive = resolve; });
  const { client: c, sub } = subscribeLive(Centrifuge, live, {
    fetch: siteFetch,
    centrifugeOptions: { websocket: WebSocket, timeout: 5000 },
    onPublication(data) {
      result.received.push(data.text);
      if (data.text === 'live') gotLive();
    },
    onResync() { result.resyncs += 1; },
  });
  client = c;
  sub.on('subscribed', (ctx) => { result.recovered = ctx.recovered; });
  await sub.ready(5000);

  result.phase = 'post live';
  await post('live', csrf);
  await liveArrived;
  result.phase = 'done';
}

main().then(() => finish(true), (e) => finish(false, e));
