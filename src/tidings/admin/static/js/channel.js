// One channel: its live tail (publications, joins and leaves as they happen), who is in it
// (presence and presence stats, refreshed on every join and leave) and its history, newest
// first with offsets, page by page.

import * as api from './api.js';
import { compactJson, errorText, fmtClock, fmtInt, h, replace } from './dom.js';

const MAX_TAIL_ITEMS = 500;
const PRESENCE_REFRESH_MS = 5000;
const HISTORY_PAGE = 20;
const NOT_AVAILABLE = 108;

function infoText(info) {
  if (!info) return '';
  const who = [info.user ? `user ${info.user}` : 'anonymous', info.client ? `client ${info.client}` : '']
    .filter(Boolean).join(' · ');
  return who;
}

function tailItem(push, at) {
  let kind = 'message';
  let badge = '';
  let meta = '';
  let body = null;
  if (push.pub) {
    kind = 'publication';
    badge = 'pub';
    const pub = push.pub;
    meta = [pub.offset ? `offset ${pub.offset}` : 'no offset', pub.info ? `from ${infoText(pub.info)}` : '',
      pub.tags ? `tags ${compactJson(pub.tags, 120)}` : ''].filter(Boolean).join(' · ');
    body = h('pre', {}, compactJson(pub.data, 2000));
  } else if (push.join || push.leave) {
    kind = push.join ? 'join' : 'leave';
    badge = kind;
    const info = (push.join || push.leave).info || {};
    meta = infoText(info);
    if (info.conn_info !== undefined) body = h('pre', {}, `conn_info ${compactJson(info.conn_info, 400)}`);
  }
  return h('li', { class: 'fresh', dataset: { kind } },
    h('span', { class: 'time' }, fmtClock(at)),
    h('span', { class: 'kind' }, h('span', { class: `badge ${badge}` }, kind)),
    h('div', { class: 'body' }, h('div', { class: 'meta' }, meta), body));
}

function tailPanel(channel, onPresenceChange) {
  const dot = h('span', { class: 'dot' });
  const state = h('span', { id: 'tail-state', class: 'small muted' }, 'connecting…');
  const counter = h('span', { class: 'badge', id: 'tail-count' }, '0 events');
  const list = h('ul', { class: 'tail-list', id: 'tail-list', 'aria-live': 'polite' });
  const empty = h('li', { class: 'tail-empty' }, 'Waiting for publications, joins and leaves…');
  list.append(empty);
  const pauseButton = h('button', { type: 'button', class: 'small', id: 'tail-pause' }, 'Pause');
  const clearButton = h('button', { type: 'button', class: 'small ghost' }, 'Clear');
  let paused = false;
  let held = [];
  let count = 0;
  let stream = null;
  let retry = 0;
  let closed = false;

  const show = (push, at) => {
    empty.remove();
    list.prepend(tailItem(push, at));
    while (list.children.length > MAX_TAIL_ITEMS) list.lastElementChild.remove();
  };
  const onEvent = ({ type, data }) => {
    if (type === 'ready') {
      dot.className = 'dot live';
      state.textContent = `live, through node ${data.node}`;
      retry = 0;
    } else if (type === 'message') {
      count += 1;
      counter.textContent = `${fmtInt(count)} event${count === 1 ? '' : 's'}`;
      if (paused) held.push([data, new Date()]);
      else show(data, new Date());
      if (data.join || data.leave) onPresenceChange();
    } else if (type === 'dropped') {
      show({ pub: { data: `(${data.dropped} events dropped: this page fell behind)` } }, new Date());
    } else if (type === 'error' || type === 'end' || type === 'closed') {
      dot.className = 'dot off';
      const why = type === 'end' ? 'the stream ended' : (data.error || data.reason || type);
      state.textContent = `not live: ${why}`;
      if (!closed && type !== 'closed') {
        retry = Math.min(retry + 1, 5);
        setTimeout(() => { if (!closed) start(); }, retry * 2000);
      }
    }
  };
  const start = () => {
    if (stream) stream.close();
    state.textContent = 'connecting…';
    stream = api.tail(channel, onEvent);
  };
  pauseButton.addEventListener('click', () => {
    paused = !paused;
    pauseButton.textContent = paused ? 'Resume' : 'Pause';
    if (!paused) {
      for (const [push, at] of held) show(push, at);
      held = [];
    }
  });
  clearButton.addEventListener('click', () => {
    replace(list, empty);
    count = 0;
    counter.textContent = '0 events';
  });
  start();
  const card = h('section', { class: 'card tail-card' },
    h('div', { class: 'card-head' }, dot, h('h2', {}, 'Live tail'), state, h('span', { class: 'spacer' }),
      counter, pauseButton, clearButton),
    list);
  return { card, stop: () => { closed = true; if (stream) stream.close(); } };
}

function presencePanel(channel) {
  const stats = h('span', { class: 'small muted', id: 'presence-stats' }, '');
  const tbody = h('tbody');
  const thead = h('thead');
  const note = h('p', { class: 'notice', hidden: true });
  const table = h('div', { class: 'table-wrap' }, h('table', { id: 'presence' }, thead, tbody));
  let pending = 0;
  const load = async () => {
    try {
      const [presence, counts] = await Promise.all([
        api.result('presence', { channel }), api.result('presence_stats', { channel })]);
      const clients = Object.values(presence.presence || {})
        .sort((a, b) => (a.user || '').localeCompare(b.user || '') || a.client.localeCompare(b.client));
      // Info columns only when someone has that info.
      const withConn = clients.some((c) => c.conn_info !== undefined);
      const withChan = clients.some((c) => c.chan_info !== undefined);
      replace(thead, h('tr', {}, h('th', {}, 'Client'), h('th', {}, 'User'),
        withConn ? h('th', {}, 'Connection info') : null, withChan ? h('th', {}, 'Channel info') : null));
      const info = (value) => h('td', { class: 'json wrap mono small' }, compactJson(value, 300));
      replace(tbody, clients.length ? clients.map((c) => h('tr', { dataset: { client: c.client, user: c.user } },
        h('td', { class: 'id' }, c.client),
        h('td', { class: 'mono' }, c.user || h('span', { class: 'muted' }, 'anonymous')),
        withConn ? info(c.conn_info) : null, withChan ? info(c.chan_info) : null))
        : h('tr', {}, h('td', { colspan: 4, class: 'empty' }, 'Nobody is in this channel.')));
      stats.textContent = `${fmtInt(counts.num_clients)} client${counts.num_clients === 1 ? '' : 's'}, `
        + `${fmtInt(counts.num_users)} user${counts.num_users === 1 ? '' : 's'}`;
      note.hidden = true;
      table.hidden = false;
    } catch (err) {
      note.textContent = err.code === NOT_AVAILABLE
        ? 'Presence is off for this channel (its namespace has presence: false).'
        : `Could not read presence: ${errorText(err)}`;
      note.classList.toggle('bad', err.code !== NOT_AVAILABLE);
      note.hidden = false;
      table.hidden = true;
    }
  };
  const soon = () => {
    clearTimeout(pending);
    pending = setTimeout(load, 250);
  };
  load();
  const timer = setInterval(load, PRESENCE_REFRESH_MS);
  const card = h('section', { class: 'card' },
    h('div', { class: 'card-head' }, h('h2', {}, 'Presence'), stats, h('span', { class: 'spacer' }),
      h('button', { type: 'button', class: 'small', onclick: load }, 'Refresh')),
    note, table);
  return { card, soon, stop: () => { clearInterval(timer); clearTimeout(pending); } };
}

function historyPanel(channel) {
  const position = h('span', { class: 'small muted', id: 'history-position' });
  const tbody = h('tbody');
  const note = h('p', { class: 'notice', hidden: true });
  const more = h('button', { type: 'button', class: 'small', id: 'history-older', hidden: true }, 'Load older');
  const table = h('div', { class: 'table-wrap' }, h('table', { id: 'history' },
    h('thead', {}, h('tr', {}, h('th', { class: 'num' }, 'Offset'), h('th', {}, 'Data'))),
    tbody));
  let epoch = '';
  let oldest = 0;
  const rows = (pubs) => pubs.map((p) => h('tr', { dataset: { offset: p.offset } },
    h('td', { class: 'num mono' }, p.offset ?? ''),
    h('td', { class: 'json mono' },
      h('span', { class: 'clip', title: compactJson(p.data, 4000) }, compactJson(p.data, 400)),
      p.tags || p.info ? h('div', { class: 'muted small' },
        [p.info ? `from ${infoText(p.info)}` : '', p.tags ? `tags ${compactJson(p.tags, 200)}` : '']
          .filter(Boolean).join(' · ')) : null)));
  const load = async (older) => {
    const params = { channel, limit: HISTORY_PAGE, reverse: true };
    if (older) params.since = { offset: oldest, epoch };
    try {
      const res = await api.result('history', params);
      const pubs = res.publications || [];
      if (!older) {
        epoch = res.epoch;
        replace(tbody);
        position.textContent = `top offset ${fmtInt(res.offset || 0)} · epoch ${res.epoch || '—'}`;
      }
      tbody.append(...rows(pubs));
      if (!tbody.children.length) tbody.append(h('tr', {}, h('td', { colspan: 2, class: 'empty' }, 'No publications in history.')));
      if (pubs.length) oldest = pubs[pubs.length - 1].offset;
      more.hidden = pubs.length < HISTORY_PAGE || oldest <= 1;
      note.hidden = true;
      table.hidden = false;
    } catch (err) {
      note.textContent = err.code === NOT_AVAILABLE
        ? 'History is off for this channel (its namespace keeps none).'
        : `Could not read history: ${errorText(err)}`;
      note.classList.toggle('bad', err.code !== NOT_AVAILABLE);
      note.hidden = false;
      table.hidden = true;
      more.hidden = true;
    }
  };
  more.addEventListener('click', () => load(true));
  load(false);
  const card = h('section', { class: 'card' },
    h('div', { class: 'card-head' }, h('h2', {}, 'History'), position, h('span', { class: 'spacer' }),
      h('button', { type: 'button', class: 'small', id: 'history-newest', onclick: () => load(false) }, 'Newest')),
    note, table, h('div', { class: 'form-foot' }, more));
  return { card };
}

export function render(view, params) {
  const channel = params.channel || '';
  const presence = presencePanel(channel);
  const live = tailPanel(channel, presence.soon);
  const history = historyPanel(channel);
  replace(view,
    h('div', { class: 'page-head' },
      h('div', {}, h('a', { href: '#/channels', class: 'small' }, '← All channels'),
        h('h1', { id: 'channel-name' }, h('span', { class: 'muted' }, 'Channel '), h('span', { class: 'mono' }, channel))),
      h('span', { class: 'spacer' }),
      h('a', { href: `#/actions?channel=${encodeURIComponent(channel)}` }, 'Publish to this channel…')),
    h('div', { class: 'channel-grid' }, live.card, presence.card, history.card));
  return () => {
    live.stop();
    presence.stop();
  };
}
