// Opens one page in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core, which
// downloads nothing) and reports what the page saw.
//
// Usage:
//   node run_page.mjs --url http://127.0.0.1:PORT/sdk.html?... [--ready EXPR] [--done EXPR]
//     [--timeout-ms 10000] [--chromium /usr/bin/chromium] [--watch-origin http://127.0.0.1:PORT]
//
// EXPR is a JavaScript expression evaluated in the page (default ready: `window.state.ready`,
// default done: `window.state.received.length >= 1`).
//
// stdout, one JSON object per line:
//   {"event":"ready","state":{...}}          once `ready` holds (the caller may act on it, e.g.
//                                             publish through the server API)
//   {"event":"done","ok":true|false,...}     last line: the page state, console messages, page
//                                             errors and the requests to --watch-origin
// Exit status 0 when `done` held within the time limit, 1 otherwise. All waits are bounded by
// --timeout-ms, measured from the start.

import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

// playwright-core is installed with the other pinned Node e2e dependencies in ../node.
const require = createRequire(new URL('../node/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const { values: argv } = parseArgs({
  options: {
    url: { type: 'string' },
    ready: { type: 'string', default: 'window.state && window.state.ready === true' },
    done: { type: 'string', default: 'window.state && window.state.received.length >= 1' },
    'timeout-ms': { type: 'string', default: '10000' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    'watch-origin': { type: 'string', default: '' },
  },
  strict: true,
});

if (!argv.url) {
  process.stderr.write('--url is required\n');
  process.exit(2);
}

const started = Date.now();
const timeoutMs = Number(argv['timeout-ms']);
const deadline = started + timeoutMs;
const remaining = () => Math.max(1, deadline - Date.now());
const elapsed = () => Date.now() - started;

const consoleMessages = [];
const pageErrors = [];
const network = [];
const watchOrigin = argv['watch-origin'];
const watched = (url) => !watchOrigin || url.startsWith(watchOrigin) ||
  url.startsWith(watchOrigin.replace(/^http/, 'ws'));
const short = (url) => (url.length > 200 ? url.slice(0, 200) + '...' : url);

let browser = null;
let page = null;
let finished = false;

function emit(obj) {
  return new Promise((resolve) => process.stdout.write(JSON.stringify(obj) + '\n', resolve));
}

async function pageState() {
  if (page === null) return null;
  try {
    return await page.evaluate(() => window.state ?? null);
  } catch (err) {
    return { evaluateError: String(err) };
  }
}

async function finish(ok, phase, error) {
  if (finished) return;
  finished = true;
  const result = {
    event: 'done',
    ok,
    phase,
    elapsedMs: elapsed(),
    state: await pageState(),
    console: consoleMessages,
    pageErrors,
    network,
  };
  if (error !== undefined) result.error = String(error && error.message ? error.message : error);
  try {
    if (browser !== null) await browser.close();
  } catch {
    // exiting anyway
  }
  await emit(result);
  process.exit(ok ? 0 : 1);
}

// A last resort in case a browser call hangs past every bounded wait.
const watchdog = setTimeout(() => {
  process.stdout.write(JSON.stringify({
    event: 'done', ok: false, phase: 'watchdog', elapsedMs: elapsed(),
    error: 'watchdog fired', state: null, console: consoleMessages, pageErrors, network,
  }) + '\n', () => process.exit(1));
}, timeoutMs + 5000);
watchdog.unref();

let phase = 'launch';
try {
  browser = await chromium.launch({
    executablePath: argv.chromium,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    timeout: remaining(),
  });
  page = await browser.newPage();
  page.on('console', (msg) => consoleMessages.push({ type: msg.type(), text: msg.text() }));
  page.on('pageerror', (err) => pageErrors.push(String(err && err.stack ? err.stack : err)));
  page.on('response', (resp) => {
    const req = resp.request();
    if (!watched(req.url())) return;
    const headers = resp.headers();
    network.push({
      at: elapsed(),
      method: req.method(),
      url: short(req.url()),
      status: resp.status(),
      contentType: headers['content-type'] ?? null,
      allowOrigin: headers['access-control-allow-origin'] ?? null,
    });
  });
  page.on('requestfailed', (req) => {
    if (!watched(req.url())) return;
    const failure = req.failure();
    network.push({
      at: elapsed(),
      method: req.method(),
      url: short(req.url()),
      failed: failure ? failure.errorText : 'unknown',
    });
  });
  page.on('websocket', (ws) => {
    const entry = { at: elapsed(), websocket: short(ws.url()), framesSent: 0, framesReceived: 0 };
    network.push(entry);
    ws.on('framesent', () => { entry.framesSent += 1; });
    ws.on('framereceived', () => { entry.framesReceived += 1; });
    ws.on('socketerror', (err) => { entry.error = String(err); });
    ws.on('close', () => { entry.closedAt = elapsed(); });
  });

  phase = 'load';
  await page.goto(argv.url, { waitUntil: 'load', timeout: remaining() });

  phase = 'ready';
  await page.waitForFunction(argv.ready, null, { timeout: remaining(), polling: 20 });
  await emit({ event: 'ready', elapsedMs: elapsed(), state: await pageState() });

  phase = 'done';
  await page.waitForFunction(argv.done, null, { timeout: remaining(), polling: 20 });
  await finish(true, phase);
} catch (err) {
  await finish(false, phase, err);
}
