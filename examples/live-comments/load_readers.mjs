// The readers of load.py: N centrifuge-js clients (the SDK the site's pages use) under Node,
// each logged in by the session cookie through nginx (the connect hook) and subscribed to the
// comments channel of one article (round robin). One process holds thousands of them at a
// fraction of the CPU centrifuge-python needs, so the generator does not skew the latency.
//
//   node load_readers.mjs WS_URL ORIGIN COOKIE N SLUG[,SLUG...] [FIRST]
//
// Readers FIRST .. FIRST+N-1 (default 0) read slug (index % slugs), so several processes can
// share the round robin. stdout, one JSON object a line: {"event":"ready", "readers": {slug: n},
// "failed": k} once every client is subscribed (or failed); then, when stdin closes,
// {"event":"result", ...}: per comment how many readers got it, duplicates, and the latency of
// every delivery (ms, 0.1 ms steps). Comments are recognised by their text, "load <seq> <CLOCK_MONOTONIC ns when POSTed>"
// (process.hrtime is CLOCK_MONOTONIC too, as Python's time.monotonic_ns).
// The packages come from node_modules here or NODE_PATH (load.py sets it): centrifuge, ws.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { Centrifuge } = require('centrifuge');
const WebSocket = require('ws');

const [wsUrl, origin, cookie, count, slugList, firstArg = '0'] = process.argv.slice(2);
const n = Number(count);
const first = Number(firstArg);
const slugs = slugList.split(',');
const TEXT = /^load (\d+) (\d+)$/;

class CookieWebSocket extends WebSocket {  // the browser sends these by itself
  constructor(url, protocols) {
    super(url, protocols, { headers: { Cookie: cookie, Origin: origin } });
  }
}

const got = new Map();  // seq -> readers that got it
const seen = [];  // per reader: the seqs it got
const latencies = [];
const readers = Object.fromEntries(slugs.map((s) => [s, 0]));
let duplicates = 0;
let settled = 0;
let failed = 0;
const clients = [];

// At most WINDOW connects in flight: each goes through the connect hook (a gunicorn sync
// worker), and a storm of them would only time out and retry.
const WINDOW = 50;
let started = 0;
function pump() {
  while (started < n && started - settled < WINDOW) reader(started++);
}

function settle() {
  settled += 1;
  pump();
  if (settled === n) process.stdout.write(`${JSON.stringify({ event: 'ready', readers, failed })}\n`);
}

function reader(i) {
  const slug = slugs[(first + i) % slugs.length];
  const client = new Centrifuge(wsUrl, { websocket: CookieWebSocket, timeout: 30000 });
  const sub = client.newSubscription(`comments:${slug}`);
  seen.push(new Set());
  sub.on('publication', (ctx) => {
    const now = process.hrtime.bigint();
    const match = TEXT.exec(ctx.data.text);
    if (!match) return;
    if (seen[i].has(match[1])) { duplicates += 1; return; }
    seen[i].add(match[1]);
    got.set(match[1], (got.get(match[1]) || 0) + 1);
    latencies.push(Math.round(Number(now - BigInt(match[2])) / 1e5) / 10);
  });
  let done = false;  // subscribed, or disconnected before that (e.g. 4501: not logged in)
  const finish = (ok) => {
    if (done) return;
    done = true;
    if (ok) readers[slug] += 1; else failed += 1;
    settle();
  };
  sub.once('subscribed', () => finish(true));
  client.once('disconnected', () => finish(false));
  sub.subscribe();
  client.connect();
  clients.push(client);
}

process.stdin.on('end', () => {
  const cpu = process.cpuUsage();
  process.stdout.write(`${JSON.stringify({ event: 'result', got: Object.fromEntries(got),
    duplicates, latencies, cpu_s: (cpu.user + cpu.system) / 1e6 })}\n`, () => {
    for (const client of clients) client.disconnect();
    process.exit(0);
  });
});
process.stdin.resume();

pump();
