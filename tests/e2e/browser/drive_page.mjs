// Drives one page of headless Chromium (Debian's /usr/bin/chromium through playwright-core,
// which downloads nothing) on commands read from stdin, one JSON object a line, answering each
// on stdout, one JSON object a line: {"id": N, "ok": true, "value": ...} or
// {"id": N, "ok": false, "error": "..."}. tests/support/browser.py is the other side.
//
// Commands ({"id": N, "op": ..., ...}):
//   goto {url}                   load a page (waits for `load`)
//   fill {selector, value}       type into an input (replacing its value)
//   click {selector}             click the first match
//   select {selector, value}     choose an option
//   wait {expr, arg}             until the page function `expr` (called with `arg`) is truthy
//   text {selector}              innerText of the first match (null: none)
//   texts {selector}             innerText of every match
//   eval {expr, arg}             the value of the page function `expr` called with `arg`
//   viewport {width, height}     resize the page
//   screenshot {path, fullPage}  save a PNG
//   diag {}                      console errors, page errors, failed requests, answers >= 400
//   fresh {}                     a new browser context and page (no storage): a clean start
// Every wait is bounded by `timeoutMs` (per command, default --timeout-ms).
//
// Usage: node drive_page.mjs [--chromium /usr/bin/chromium] [--timeout-ms 5000]

import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const require = createRequire(new URL('../node/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const { values: argv } = parseArgs({
  options: {
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    'timeout-ms': { type: 'string', default: '5000' },
  },
  strict: true,
});
const defaultTimeout = Number(argv['timeout-ms']);

const browser = await chromium.launch({
  executablePath: argv.chromium,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--disable-dev-shm-usage'],
  timeout: 30000,
});
let context = null;
let page = null;
let diag = null;

// A new context (no cookies, no storage) with one page: what each test starts from.
async function fresh() {
  if (context !== null) await context.close();
  context = await browser.newContext({ viewport: { width: 1360, height: 860 } });
  page = await context.newPage();
  const seen = { console: [], pageErrors: [], failed: [], errorResponses: [] };
  diag = seen;
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') seen.console.push(`${msg.type()}: ${msg.text()}`);
  });
  page.on('pageerror', (err) => seen.pageErrors.push(String(err && err.stack ? err.stack : err)));
  page.on('response', (resp) => {
    if (resp.status() < 400) return;
    const entry = `${resp.status()} ${resp.request().method()} ${resp.url()}`;
    seen.errorResponses.push(entry);
    resp.text().then((body) => {
      const i = seen.errorResponses.indexOf(entry);
      if (i >= 0 && body) seen.errorResponses[i] = `${entry}: ${body.slice(0, 300)}`;
    }).catch(() => {});
  });
  page.on('requestfailed', (req) => {
    const why = req.failure() ? req.failure().errorText : 'unknown';
    // A live tail's fetch is aborted on purpose when its page is left.
    if (why !== 'net::ERR_ABORTED') seen.failed.push(`${req.method()} ${req.url()}: ${why}`);
  });
}
await fresh();

const ops = {
  goto: (c, timeout) => page.goto(c.url, { waitUntil: 'load', timeout }).then(() => null),
  fill: (c, timeout) => page.locator(c.selector).first().fill(String(c.value), { timeout }),
  click: (c, timeout) => page.locator(c.selector).first().click({ timeout }),
  select: (c, timeout) => page.locator(c.selector).first().selectOption(String(c.value), { timeout }).then(() => null),
  // eslint-disable-next-line no-new-func
  wait: (c, timeout) => page.waitForFunction(new Function('arg', `return (${c.expr})(arg);`), c.arg ?? null,
    { timeout, polling: 20 }).then((handle) => handle.jsonValue()),
  text: (c) => page.evaluate((s) => document.querySelector(s)?.innerText ?? null, c.selector),
  texts: (c) => page.evaluate((s) => [...document.querySelectorAll(s)].map((e) => e.innerText), c.selector),
  // eslint-disable-next-line no-new-func
  eval: (c) => page.evaluate(new Function('arg', `return (${c.expr})(arg);`), c.arg ?? null),
  viewport: (c) => page.setViewportSize({ width: c.width, height: c.height }),
  screenshot: (c) => page.screenshot({ path: c.path, fullPage: !!c.fullPage, animations: 'disabled' })
    .then(() => null),
  diag: () => Promise.resolve(diag),
  fresh: () => fresh().then(() => null),
};

function answer(obj) {
  return new Promise((resolve) => process.stdout.write(`${JSON.stringify(obj)}\n`, resolve));
}

await answer({ id: 0, ok: true, value: 'started' });
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let command;
  try {
    command = JSON.parse(line);
  } catch (err) {
    await answer({ id: -1, ok: false, error: `bad command: ${err.message}` });
    continue;
  }
  const op = ops[command.op];
  try {
    if (!op) throw new Error(`unknown op ${command.op}`);
    const value = await op(command, command.timeoutMs ?? defaultTimeout);
    await answer({ id: command.id, ok: true, value: value ?? null });
  } catch (err) {
    await answer({ id: command.id, ok: false, error: String(err && err.message ? err.message : err) });
  }
}
await browser.close();
