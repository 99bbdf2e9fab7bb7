// Connections inspector: a user's connections on every node (the admin API's `connections`,
// a survey of the nodes): transport, protocol, client ID, since when, channels. Disconnect one,
// or every connection of the user, with a code and reason of your choice.

import * as api from './api.js';
import { channelHref } from './channels.js';
import { errorText, fmtDate, fmtInt, fmtSince, h, prettyJson, replace, showAnswer } from './dom.js';

function disconnectDialog(onDone) {
  const title = h('h2', {});
  const code = h('input', { id: 'dc-code', type: 'number', min: 3000, max: 4999, value: '4000', required: true });
  const reason = h('input', { id: 'dc-reason', value: 'disconnected by admin', maxlength: 120 });
  const answer = h('pre', { class: 'answer', id: 'dc-answer' });
  const submit = h('button', { type: 'submit', class: 'danger solid', id: 'dc-submit' }, 'Disconnect');
  const dialog = h('dialog', { id: 'disconnect-dialog' },
    h('form', { method: 'dialog' },
      title,
      h('p', { class: 'small muted' }, 'Codes 3000–3499 and 4000–4499 let the client reconnect; 3500–3999 and 4500–4999 do not.'),
      h('div', { class: 'fields' },
        h('div', {}, h('label', { for: 'dc-code' }, 'Code'), code),
        h('div', {}, h('label', { for: 'dc-reason' }, 'Reason'), reason)),
      answer,
      h('div', { class: 'form-foot' }, submit,
        h('button', { type: 'button', onclick: () => dialog.close() }, 'Close'))));
  let target = null;
  dialog.querySelector('form').addEventListener('submit', async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      const params = { user: target.user, disconnect: { code: Number(code.value), reason: reason.value } };
      if (target.client) params.client = target.client;
      const reply = await api.call('disconnect', params);
      showAnswer(answer, reply);
      if (reply.result) onDone();
    } catch (err) {
      showAnswer(answer, err);
    } finally {
      submit.disabled = false;
    }
  });
  return {
    dialog,
    open(user, client) {
      target = { user, client };
      replace(title, client ? `Disconnect client ${client.slice(0, 8)}…` : `Disconnect every connection of user ${user}`);
      answer.textContent = '';
      answer.className = 'answer';
      dialog.showModal();
      code.focus();
    },
  };
}

function row(c, dialog) {
  return h('tr', { dataset: { client: c.client, user: c.user } },
    h('td', { class: 'nowrap' }, c.node_name),
    h('td', { class: 'id' }, c.client),
    h('td', { class: 'mono' }, c.user || h('span', { class: 'muted' }, 'anonymous')),
    h('td', { class: 'nowrap' }, h('span', { class: 'badge' }, c.transport)),
    h('td', {}, h('span', { class: 'badge' }, c.protocol)),
    h('td', { class: 'nowrap', title: fmtDate(c.connected_at) }, fmtSince(c.connected_at)),
    h('td', {}, c.channels.length
      ? c.channels.map((ch) => h('a', { class: 'chip', href: channelHref(ch) }, ch))
      : h('span', { class: 'muted' }, 'none')),
    h('td', { class: 'hide-narrow json mono small' }, c.info === undefined ? '' : h('span', { class: 'clip', title: prettyJson(c.info) }, JSON.stringify(c.info))),
    h('td', {}, h('button', { type: 'button', class: 'small danger', onclick: () => dialog.open(c.user, c.client) }, 'Disconnect')));
}

export function render(view, params) {
  const user = h('input', { id: 'conn-user', type: 'search', placeholder: 'User ID (empty: the newest connections of anyone)',
    value: params.user || '', 'aria-label': 'User ID' });
  const tbody = h('tbody');
  const summary = h('span', { class: 'small muted', id: 'conn-summary' });
  const error = h('p', { class: 'notice bad', hidden: true });
  const all = h('button', { type: 'button', class: 'danger', id: 'conn-disconnect-all', hidden: true }, 'Disconnect all');
  let searched = '';
  const load = async () => {
    searched = user.value.trim();
    try {
      const res = await api.result('connections', { user: searched, limit: 200 });
      replace(tbody, res.connections.length ? res.connections.map((c) => row(c, dialog))
        : h('tr', {}, h('td', { colspan: 9, class: 'empty' },
          searched ? `User ${searched} has no connection on any node.` : 'No connections.')));
      summary.textContent = res.total > res.connections.length
        ? `${fmtInt(res.connections.length)} of ${fmtInt(res.total)} connections`
        : `${fmtInt(res.total)} connection${res.total === 1 ? '' : 's'}`;
      all.hidden = !searched || !res.connections.length;
      all.textContent = `Disconnect all of ${searched}`;
      error.hidden = true;
    } catch (err) {
      error.textContent = `Could not list connections: ${errorText(err)}`;
      error.hidden = false;
    }
  };
  const dialog = disconnectDialog(() => setTimeout(load, 300));
  all.addEventListener('click', () => dialog.open(searched, ''));
  replace(view,
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, 'Connections'),
        h('p', {}, 'Find a user\'s connections on every node; disconnect one or all of them.'))),
    h('form', { class: 'card row', onsubmit: (e) => {
      e.preventDefault();
      window.history.replaceState(null, '', `#/connections?user=${encodeURIComponent(user.value.trim())}`);
      load();
    } }, user, h('button', { type: 'submit', class: 'primary', id: 'conn-find' }, 'Find'), all),
    error,
    h('section', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', {}, 'Connections'), summary, h('span', { class: 'spacer' }),
        h('button', { type: 'button', class: 'small', onclick: load }, 'Refresh')),
      h('div', { class: 'table-wrap' }, h('table', { id: 'connections' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Node'), h('th', {}, 'Client ID'), h('th', {}, 'User'),
          h('th', {}, 'Transport'), h('th', {}, 'Protocol'), h('th', {}, 'Connected'),
          h('th', {}, 'Channels'), h('th', { class: 'hide-narrow' }, 'Info'), h('th'))),
        tbody))),
    dialog.dialog);
  load();
  return () => dialog.dialog.close();
}
