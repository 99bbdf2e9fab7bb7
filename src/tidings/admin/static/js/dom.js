// Small DOM and formatting helpers. Text always goes in as text (never as HTML), so data from
// the server (channel names, publications, user IDs) cannot inject markup.

const PROPS = new Set(['value', 'checked', 'disabled', 'selected', 'textContent', 'open']);

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (PROPS.has(key)) el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  return h('div', { class: input.dataset.wide ? 'wide' : null },
    h('label', { for: id }, label), input, hint || null);
}

export function fmtInt(n) {
  return typeof n === 'number' ? n.toLocaleString('en-US') : '—';
}

export function fmtRate(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '—';
  if (n >= 100) return Math.round(n).toLocaleString('en-US');
  return n.toFixed(n >= 10 ? 1 : 2);
}

export function fmtBytes(n) {
  if (typeof n !== 'number') return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value >= 100 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

export function fmtDuration(seconds) {
  if (typeof seconds !== 'number') return '—';
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400);
  const hr = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${hr}h`;
  if (hr) return `${hr}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

export function fmtClock(date) {
  return date.toLocaleTimeString('en-GB', { hour12: false });
}

export function fmtSince(unixSeconds) {
  if (!unixSeconds) return '—';
  return `${fmtDuration(Date.now() / 1000 - unixSeconds)} ago`;
}

export function fmtDate(unixSeconds) {
  if (!unixSeconds) return '';
  return new Date(unixSeconds * 1000).toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
}

export function compactJson(value, max = 240) {
  if (value === undefined) return '';
  const text = typeof value === 'string' ? JSON.stringify(value) : JSON.stringify(value);
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

export function prettyJson(value) {
  return JSON.stringify(value, null, 2);
}

// A <pre> showing an API answer: green for a result, red for an error.
export function showAnswer(pre, reply) {
  pre.classList.toggle('ok', !!reply && 'result' in reply);
  pre.classList.toggle('bad', !reply || 'error' in reply);
  pre.textContent = reply instanceof Error ? String(reply.message || reply) : prettyJson(reply);
}

// Validates a JSON editor as the user types: marks the input, writes the hint, returns the
// value (undefined when invalid).
export function jsonEditor(textarea, hint, onChange) {
  const check = () => {
    const text = textarea.value.trim();
    let ok = true;
    let message = 'valid JSON';
    if (!text) {
      ok = false;
      message = 'JSON expected';
    } else {
      try { JSON.parse(text); } catch (err) { ok = false; message = err.message; }
    }
    textarea.classList.toggle('invalid', !ok);
    textarea.setAttribute('aria-invalid', String(!ok));
    hint.className = `hint ${ok ? 'ok' : 'bad'}`;
    hint.textContent = ok ? '✓ valid JSON' : `✗ ${message}`;
    if (onChange) onChange(ok);
    return ok;
  };
  textarea.addEventListener('input', check);
  check();
  return () => (check() ? JSON.parse(textarea.value) : undefined);
}

export function errorText(err) {
  if (!err) return '';
  if (err.code !== undefined) return `error ${err.code}: ${err.message}`;
  return String(err.message || err);
}
