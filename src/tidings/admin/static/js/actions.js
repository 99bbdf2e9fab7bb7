// Actions: the server API from forms. Publish and broadcast take JSON checked as you type;
// unsubscribe, disconnect (with a code) and history removal act on users and channels; any
// other method can be called raw. Each form shows the API's answer as it came.

import * as api from './api.js';
import { h, jsonEditor, replace, showAnswer } from './dom.js';

const METHODS = ['publish', 'broadcast', 'subscribe', 'unsubscribe', 'disconnect', 'refresh',
  'presence', 'presence_stats', 'history', 'history_remove', 'channels', 'info', 'connections'];

function input(id, spec) {
  const props = { id, name: spec.name, placeholder: spec.placeholder || '', required: !!spec.required,
    value: spec.value ?? '' };
  if (spec.json || spec.multiline) {
    return h('textarea', { ...props, rows: spec.rows || 4, spellcheck: 'false', dataset: { wide: '1' } });
  }
  if (spec.type === 'checkbox') return h('input', { id, name: spec.name, type: 'checkbox', checked: !!spec.value });
  return h('input', { ...props, type: spec.type || 'text', min: spec.min, max: spec.max,
    list: spec.list });
}

// One form: fields -> params (build) -> api.call(method) -> the answer shown below it.
function actionCard(spec) {
  const answer = h('pre', { class: 'answer', id: `${spec.id}-answer`, 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit', id: `${spec.id}-submit`,
    class: spec.danger ? 'danger solid' : 'primary' }, spec.submit);
  const inputs = {};
  const readers = {};
  const valid = {};
  const cells = spec.fields.map((f) => {
    const id = `${spec.id}-${f.name}`;
    const el = input(id, f);
    inputs[f.name] = el;
    if (f.type === 'checkbox') {
      return h('div', { class: 'wide' }, h('label', { class: 'check', for: id }, el, f.label));
    }
    let hint = null;
    if (f.json) {
      hint = h('div', { class: 'hint', id: `${id}-hint` });
      readers[f.name] = jsonEditor(el, hint, (ok) => {
        valid[f.name] = ok;
        submit.disabled = Object.values(valid).some((v) => !v);
      });
    } else if (f.hint) hint = h('div', { class: 'hint' }, f.hint);
    return h('div', { class: f.json || f.multiline || f.wide ? 'wide' : null },
      h('label', { for: id }, f.label, f.required || f.json ? '' : h('span', { class: 'muted' }, ' (optional)')),
      el, hint);
  });
  const values = () => {
    const out = {};
    for (const f of spec.fields) {
      const el = inputs[f.name];
      if (f.type === 'checkbox') out[f.name] = el.checked;
      else if (f.json) out[f.name] = readers[f.name]();
      else out[f.name] = el.value.trim();
    }
    return out;
  };
  const form = h('form', { class: 'card', id: `${spec.id}-form`, novalidate: true },
    h('h2', {}, spec.title),
    spec.description ? h('p', { class: 'small muted' }, spec.description) : null,
    h('div', { class: 'fields' }, cells),
    h('div', { class: 'form-foot' }, submit),
    answer);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!form.reportValidity()) return;
    submit.disabled = true;
    try {
      const v = values();
      const method = spec.method ? spec.method(v) : spec.id;
      showAnswer(answer, await api.call(method, spec.build(v)));
    } catch (err) {
      showAnswer(answer, err);
    } finally {
      submit.disabled = Object.values(valid).some((ok) => !ok);
    }
  });
  return form;
}

function optional(params) {
  return Object.fromEntries(Object.entries(params).filter(([, v]) => v !== '' && v !== undefined));
}

export function render(view, params) {
  const channel = params.channel || '';
  replace(view,
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, 'Actions'),
        h('p', {}, 'Call the server API on the whole cluster. Each form shows the answer as the API gave it.'))),
    h('datalist', { id: 'api-methods' }, METHODS.map((m) => h('option', { value: m }))),
    h('div', { class: 'grid actions' },
      actionCard({
        id: 'publish', title: 'Publish', submit: 'Publish',
        description: 'Send data to every subscriber of a channel (and into its history).',
        fields: [
          { name: 'channel', label: 'Channel', required: true, value: channel, wide: true },
          { name: 'data', label: 'Data (JSON)', json: true, value: '{"text": "hello"}', rows: 5 },
          { name: 'idempotency_key', label: 'Idempotency key', wide: true,
            placeholder: 'a retry with the same key is applied once' },
          { name: 'skip_history', label: 'Skip history', type: 'checkbox' },
        ],
        build: (v) => optional({ channel: v.channel, data: v.data, idempotency_key: v.idempotency_key,
          skip_history: v.skip_history || undefined }),
      }),
      actionCard({
        id: 'broadcast', title: 'Broadcast', submit: 'Broadcast',
        description: 'The same data to several channels: one a line (or separated by commas).',
        fields: [
          { name: 'channels', label: 'Channels', multiline: true, required: true, rows: 3,
            value: channel, placeholder: 'news\nchat:lobby' },
          { name: 'data', label: 'Data (JSON)', json: true, value: '{"text": "hello everyone"}' },
        ],
        build: (v) => ({ channels: v.channels.split(/[\n,]+/).map((c) => c.trim()).filter(Boolean), data: v.data }),
      }),
      actionCard({
        id: 'disconnect', title: 'Disconnect a user', submit: 'Disconnect', danger: true,
        description: 'Close every connection of the user (or one client) on every node, with this code.',
        fields: [
          { name: 'user', label: 'User', required: true },
          { name: 'client', label: 'Client ID' },
          { name: 'code', label: 'Code', type: 'number', value: '4000', min: 3000, max: 4999, required: true,
            hint: '3000–3499, 4000–4499: the client reconnects; 3500–3999, 4500–4999: it does not.' },
          { name: 'reason', label: 'Reason', value: 'disconnected by admin' },
        ],
        build: (v) => optional({ user: v.user, client: v.client,
          disconnect: { code: Number(v.code), reason: v.reason } }),
      }),
      actionCard({
        id: 'unsubscribe', title: 'Unsubscribe a user', submit: 'Unsubscribe', danger: true,
        description: 'Remove the user (or one client) from a channel on every node.',
        fields: [
          { name: 'user', label: 'User', required: true },
          { name: 'channel', label: 'Channel', required: true, value: channel },
          { name: 'client', label: 'Client ID', wide: true },
        ],
        build: (v) => optional({ user: v.user, channel: v.channel, client: v.client }),
      }),
      actionCard({
        id: 'subscribe', title: 'Subscribe a user', submit: 'Subscribe',
        description: 'Subscribe the user\'s connections (or one client) to a channel, server-side.',
        fields: [
          { name: 'user', label: 'User', required: true },
          { name: 'channel', label: 'Channel', required: true, value: channel },
          { name: 'client', label: 'Client ID', wide: true },
        ],
        build: (v) => optional({ user: v.user, channel: v.channel, client: v.client }),
      }),
      actionCard({
        id: 'history_remove', title: 'Remove history', submit: 'Remove history', danger: true,
        description: 'Delete the channel\'s history (its stream position is kept).',
        fields: [{ name: 'channel', label: 'Channel', required: true, value: channel, wide: true }],
        build: (v) => ({ channel: v.channel }),
      }),
      actionCard({
        id: 'raw', title: 'Any API method', submit: 'Call',
        description: 'Any method of the server API with its parameters as JSON.',
        fields: [
          { name: 'method', label: 'Method', required: true, value: 'info', wide: true,
            list: 'api-methods' },
          { name: 'params', label: 'Params (JSON)', json: true, value: '{}' },
        ],
        method: (v) => v.method,
        build: (v) => v.params,
      })));
  return () => {};
}
