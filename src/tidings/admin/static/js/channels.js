// Channels: those with subscribers on any node (the `channels` method), filtered by a glob
// pattern on the server, busiest first; a channel opens its page (presence, history, live tail).
// Any channel can be opened by name, subscribers or not (to watch it before anyone joins).

import * as api from './api.js';
import { errorText, fmtClock, fmtInt, h, replace } from './dom.js';

const REFRESH_MS = 5000;

export function channelHref(name) {
  return `#/channel/${encodeURIComponent(name)}`;
}

export function render(view, params) {
  const pattern = h('input', { id: 'channels-filter', type: 'search', placeholder: 'Filter: a glob pattern, e.g. chat:*',
    value: params.pattern || '', 'aria-label': 'Filter channels' });
  const open = h('input', { id: 'channel-open', placeholder: 'Channel name', 'aria-label': 'Channel name' });
  const tbody = h('tbody');
  const count = h('span', { class: 'muted small', id: 'channels-count' });
  const updated = h('span', { class: 'updated' });
  const error = h('p', { class: 'notice bad', hidden: true });

  replace(view,
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, 'Channels'),
        h('p', {}, 'Channels with subscribers on any node. Open one to see who is in it and watch it live.')),
      h('span', { class: 'spacer' }), updated),
    h('div', { class: 'grid two' },
      h('form', { class: 'card row', onsubmit: (e) => { e.preventDefault(); load(); } },
        pattern, h('button', { type: 'submit' }, 'Filter')),
      h('form', { class: 'card row', onsubmit: (e) => {
        e.preventDefault();
        if (open.value.trim()) window.location.hash = channelHref(open.value.trim());
      } }, open, h('button', { type: 'submit', class: 'primary' }, 'Open channel'))),
    h('div', { class: 'stack' }, error,
      h('section', { class: 'card' },
        h('div', { class: 'card-head' }, h('h2', {}, 'Active channels'), count),
        h('div', { class: 'table-wrap' },
          h('table', { id: 'channels' },
            h('thead', {}, h('tr', {}, h('th', {}, 'Channel'), h('th', { class: 'num' }, 'Subscribers'))),
            tbody)))));

  let timer = 0;
  let stopped = false;
  async function load() {
    clearTimeout(timer);
    try {
      const { channels } = await api.result('channels', { pattern: pattern.value.trim() });
      const rows = Object.entries(channels)
        .sort((a, b) => b[1].num_clients - a[1].num_clients || a[0].localeCompare(b[0]));
      replace(tbody, rows.length ? rows.map(([name, info]) => h('tr', { dataset: { channel: name } },
        h('td', {}, h('a', { href: channelHref(name), class: 'mono' }, name)),
        h('td', { class: 'num' }, fmtInt(info.num_clients))))
        : h('tr', {}, h('td', { colspan: 2, class: 'empty' },
          pattern.value.trim() ? 'No channel matches this pattern.' : 'No channel has subscribers right now.')));
      count.textContent = `${rows.length} channel${rows.length === 1 ? '' : 's'}`;
      updated.textContent = `Updated ${fmtClock(new Date())}`;
      error.hidden = true;
    } catch (err) {
      error.textContent = `Could not list channels: ${errorText(err)}`;
      error.hidden = false;
    }
    if (!stopped) timer = setTimeout(load, REFRESH_MS);
  }
  load();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
