// The admin endpoints, relative to where the UI is served (admin.handler_prefix): login, the
// admin API (the server API's legacy format plus `connections`) and the live tail stream.
// The token travels in the Authorization header only, never in a URL.

const base = window.location.pathname.replace(/[^/]*$/, '');
const TOKEN_KEY = 'tidings-admin-token';

export const paths = {
  init: `${base}admin/init`,
  auth: `${base}admin/auth`,
  api: `${base}admin/api`,
  tail: `${base}admin/tail`,
};

export const session = {
  token: localStorage.getItem(TOKEN_KEY) || '',
  insecure: false,
  onUnauthorized: () => {},
};

export function setToken(token) {
  session.token = token;
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

function authHeaders() {
  return session.token ? { Authorization: `token ${session.token}` } : {};
}

export class ApiError extends Error {
  constructor(error) {
    super(error.message);
    this.code = error.code;
  }
}

export async function init() {
  const resp = await fetch(paths.init, { headers: authHeaders(), cache: 'no-store' });
  if (!resp.ok) throw new Error(`admin/init: HTTP ${resp.status}`);
  return resp.json();
}

// {ok: true} or {ok: false, message, retryAfter}
export async function login(password) {
  const resp = await fetch(paths.auth, {
    method: 'POST',
    body: new URLSearchParams({ password }),
    cache: 'no-store',
  });
  if (resp.ok) {
    const { token } = await resp.json();
    setToken(token);
    return { ok: true };
  }
  if (resp.status === 429) {
    const retryAfter = Number(resp.headers.get('Retry-After') || '0');
    return { ok: false, throttled: true, retryAfter,
      message: `Too many wrong passwords: try again in ${retryAfter} s.` };
  }
  return { ok: false, message: resp.status === 400 ? 'Wrong password.' : `HTTP ${resp.status}` };
}

// One admin API call; the reply object ({result} or {error}) as the server sent it.
export async function call(method, params = {}) {
  const resp = await fetch(paths.api, {
    method: 'POST',
    headers: { ...authHeaders(), 'Content-Type': 'application/json' },
    body: JSON.stringify({ method, params }),
    cache: 'no-store',
  });
  if (resp.status === 401) {
    session.onUnauthorized();
    throw new Error('unauthorized: log in again');
  }
  const text = await resp.text();
  if (!resp.ok) throw new Error(`HTTP ${resp.status}: ${text.trim()}`);
  return JSON.parse(text);
}

// The result of a call that must succeed (ApiError otherwise).
export async function result(method, params = {}) {
  const reply = await call(method, params);
  if (reply.error) throw new ApiError(reply.error);
  return reply.result;
}

// Follows a channel's live tail. onEvent({type, data}) gets `ready`, `message` (a push:
// {channel, pub|join|leave}), `dropped`, `closed`, `error` and, at the end, `end`.
// Returns {close()}.
export function tail(channel, onEvent) {
  const controller = new AbortController();
  const url = `${paths.tail}?channel=${encodeURIComponent(channel)}`;
  (async () => {
    const resp = await fetch(url, { headers: authHeaders(), signal: controller.signal,
      cache: 'no-store' });
    if (resp.status === 401) {
      session.onUnauthorized();
      return;
    }
    if (!resp.ok) {
      onEvent({ type: 'error', data: { error: (await resp.text()).trim() || `HTTP ${resp.status}` } });
      return;
    }
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        dispatch(buffer.slice(0, end), onEvent);
        buffer = buffer.slice(end + 2);
      }
    }
    onEvent({ type: 'end', data: {} });
  })().catch((err) => {
    if (err.name !== 'AbortError') onEvent({ type: 'error', data: { error: String(err.message || err) } });
  });
  return { close: () => controller.abort() };
}

function dispatch(block, onEvent) {
  let type = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) continue; // keep-alive comment
    if (line.startsWith('event: ')) type = line.slice(7);
    else if (line.startsWith('data: ')) data.push(line.slice(6));
  }
  if (!data.length) return;
  try {
    onEvent({ type, data: JSON.parse(data.join('\n')) });
  } catch (err) {
    onEvent({ type: 'error', data: { error: `unreadable event: ${err.message}` } });
  }
}
