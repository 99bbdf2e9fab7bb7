// Status: every node of the cluster (the `info` method), refreshed every 2 s while the tab is
// visible. Messages in/out per second come from two readings of each node's transport
// counters (`transports`), over the time between the two infos (`time`): other nodes' infos
// are their latest heartbeats (every 3 s). CPU and memory are the node's process (`process`).

import * as api from './api.js';
import { errorText, fmtBytes, fmtClock, fmtDuration, fmtInt, fmtRate, h, replace } from './dom.js';

const REFRESH_MS = 2000;

function totals(node) {
  let received = 0;
  let sent = 0;
  for (const stats of Object.values(node.transports || {})) {
    received += stats.messages_received || 0;
    sent += stats.messages_sent || 0;
  }
  return { received, sent };
}

// Per node uid: the last reading and the rates it gave.
const readings = new Map();

function rates(node) {
  const now = { time: node.time, ...totals(node) };
  const last = readings.get(node.uid);
  if (!last || typeof now.time !== 'number') {
    readings.set(node.uid, { ...now, in: undefined, out: undefined });
    return {};
  }
  if (now.time > last.time) {
    const seconds = now.time - last.time;
    readings.set(node.uid, {
      ...now,
      in: Math.max(0, now.received - last.received) / seconds,
      out: Math.max(0, now.sent - last.sent) / seconds,
    });
  }
  const current = readings.get(node.uid);
  return { in: current.in, out: current.out };
}

function engineCell(node) {
  const engine = node.engine || {};
  const name = engine.type || '?';
  if (engine.healthy === false) {
    return h('td', {}, h('span', { class: 'badge bad', title: engine.error || '' }, `${name}: down`));
  }
  return h('td', {}, h('span', { class: 'badge ok' }, `${name}: ok`));
}

function nodeRow(node) {
  const r = rates(node);
  return h('tr', { dataset: { node: node.name, uid: node.uid } },
    h('td', {}, h('strong', {}, node.name), h('div', { class: 'muted small mono' }, node.uid.slice(0, 8))),
    h('td', { class: 'nowrap' }, node.version),
    h('td', { class: 'num' }, fmtDuration(node.uptime)),
    h('td', { class: 'num', dataset: { col: 'clients' } }, fmtInt(node.num_clients)),
    h('td', { class: 'num' }, fmtInt(node.num_users)),
    h('td', { class: 'num' }, fmtInt(node.num_channels)),
    h('td', { class: 'num' }, fmtInt(node.num_subs)),
    h('td', { class: 'num', dataset: { col: 'in' } }, fmtRate(r.in)),
    h('td', { class: 'num', dataset: { col: 'out' } }, fmtRate(r.out)),
    h('td', { class: 'num' }, node.process ? `${node.process.cpu}%` : 'n/a'),
    h('td', { class: 'num' }, node.process ? fmtBytes(node.process.rss) : 'n/a'),
    engineCell(node));
}

function stat(label, value, id) {
  return h('div', { class: 'card stat' }, h('div', { class: 'value', id }, value),
    h('div', { class: 'label' }, label));
}

export function render(view) {
  const tbody = h('tbody', {}, h('tr', {}, h('td', { colspan: 12, class: 'empty' }, 'Loading…')));
  const tfoot = h('tfoot');
  const updated = h('span', { class: 'updated', id: 'status-updated' });
  const error = h('p', { class: 'notice bad', hidden: true });
  const stats = h('div', { class: 'stats' });
  replace(view,
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, 'Cluster status'),
        h('p', {}, 'Every node, refreshed every 2 seconds.')),
      h('span', { class: 'spacer' }), updated),
    error, stats,
    h('section', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', {}, 'Nodes')),
      h('div', { class: 'table-wrap' },
        h('table', { id: 'nodes' },
          h('thead', {}, h('tr', {},
            h('th', {}, 'Node'), h('th', {}, 'Version'), h('th', { class: 'num' }, 'Uptime'),
            h('th', { class: 'num' }, 'Clients'), h('th', { class: 'num' }, 'Users'),
            h('th', { class: 'num' }, 'Channels'), h('th', { class: 'num' }, 'Subs'),
            h('th', { class: 'num' }, 'Msgs in/s'), h('th', { class: 'num' }, 'Msgs out/s'),
            h('th', { class: 'num' }, 'CPU'), h('th', { class: 'num' }, 'Memory'),
            h('th', {}, 'Engine'))),
          tbody, tfoot))));

  let timer = 0;
  let stopped = false;
  const refresh = async () => {
    if (stopped) return;
    try {
      const { nodes } = await api.result('info');
      nodes.sort((a, b) => a.name.localeCompare(b.name));
      replace(tbody, nodes.map(nodeRow));
      const sum = (key) => nodes.reduce((acc, n) => acc + (n[key] || 0), 0);
      const rows = nodes.map((n) => readings.get(n.uid) || {});
      const sumRate = (key) => (rows.some((r) => typeof r[key] === 'number')
        ? rows.reduce((acc, r) => acc + (r[key] || 0), 0) : undefined);
      replace(tfoot, h('tr', {},
        h('td', {}, `${nodes.length} node${nodes.length === 1 ? '' : 's'}`), h('td'), h('td'),
        h('td', { class: 'num' }, fmtInt(sum('num_clients'))), h('td'), h('td'),
        h('td', { class: 'num' }, fmtInt(sum('num_subs'))),
        h('td', { class: 'num' }, fmtRate(sumRate('in'))),
        h('td', { class: 'num' }, fmtRate(sumRate('out'))), h('td'), h('td'), h('td')));
      replace(stats,
        stat('Nodes', fmtInt(nodes.length), 'stat-nodes'),
        stat('Clients', fmtInt(sum('num_clients')), 'stat-clients'),
        stat('Subscriptions', fmtInt(sum('num_subs')), 'stat-subs'),
        stat('Messages in/s', fmtRate(sumRate('in')), 'stat-in'),
        stat('Messages out/s', fmtRate(sumRate('out')), 'stat-out'));
      error.hidden = true;
      updated.textContent = `Updated ${fmtClock(new Date())}`;
    } catch (err) {
      error.textContent = `Could not read the cluster status: ${errorText(err)}`;
      error.hidden = false;
    }
    if (!stopped) timer = setTimeout(tick, REFRESH_MS);
  };
  const tick = () => {
    if (document.visibilityState === 'visible') refresh();
    else timer = setTimeout(tick, REFRESH_MS);
  };
  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
