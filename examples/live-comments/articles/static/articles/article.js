// The article page's live features (docs/tutorial.md, "The page"). The server rendered the
// comments and, in the `live` JSON, the stream position it read them at; live.js subscribes
// from there, so no comment falls between the render and the subscription.
//
// - new comments: publications of `comments:<slug>` (the outbox publishes each committed
//   comment); after a lost connection the SDK recovers the missed ones from that channel's
//   history, on whichever Tidings node nginx picks;
// - "N reading": presence stats of that channel, asked again on every join and leave;
// - "... is typing": publications to `typing:<slug>`, checked and rewritten by the site's
//   publish hook (articles/realtime.py);
// - the connection is logged in by the Django session cookie (the connect hook): no token.
//
// State is mirrored in data attributes (#connection: data-state, data-transport,
// data-recovered; #readers: data-users) for the end-to-end test.
import { subscribeLive } from '../live.js';

const $ = (id) => document.getElementById(id);
const live = JSON.parse($('live').textContent);
const list = $('comments');
const count = $('count');
const readers = $('readers');
const connection = $('connection');
const typingLine = $('typing');
const form = $('comment-form');
const textarea = $('comment-text');
const submit = $('comment-submit');
const formError = $('form-error');
list.scrollTop = list.scrollHeight;  // the newest comments in view

// WebSocket first, then the HTTP-streaming and SSE fallbacks (nginx proxies all three);
// ?transport=sse (or http_stream, websocket) keeps only that one, to try a fallback.
function endpoints(path) {
  const ws = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${path}`;
  const all = [
    { transport: 'websocket', endpoint: ws },
    { transport: 'http_stream', endpoint: path.replace(/websocket$/, 'http_stream') },
    { transport: 'sse', endpoint: path.replace(/websocket$/, 'sse') },
  ];
  const only = new URLSearchParams(location.search).get('transport');
  return only ? all.filter((e) => e.transport === only) : all;
}

function render(comment) {
  if (list.querySelector(`[data-id="${comment.id}"]`)) return;  // rendered already
  const li = document.createElement('li');
  li.className = 'comment fresh';
  li.dataset.id = comment.id;
  const author = document.createElement('b');
  author.className = 'author';
  author.textContent = comment.author;
  const text = document.createElement('span');
  text.className = 'text';
  text.textContent = comment.text;
  li.append(author, ' ', text);
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
  const next = [...list.children].find((e) => Number(e.dataset.id) > comment.id);
  list.insertBefore(li, next || null);  // id order, whichever arrives first
  if (atBottom) list.scrollTop = list.scrollHeight;  // follow new comments
  count.textContent = list.children.length;
  typing.stopped(comment.author);
}

const { client, sub } = subscribeLive(Centrifuge, { ...live, url: endpoints(live.url) }, {
  onPublication: render,
  onResync: () => location.reload(),  // history no longer reaches back: render again
  centrifugeOptions: { getToken: null },  // the session cookie logs in (connect hook)
  subscriptionOptions: { joinLeave: true },  // join/leave events refresh "N reading"
});

// ---- connection state
function setState(state, label) {
  connection.dataset.state = state;
  connection.textContent = label;
}
client.on('connecting', () => setState('connecting', 'reconnecting…'));
client.on('disconnected', (ctx) => setState('disconnected', `offline (${ctx.reason})`));
client.on('connected', (ctx) => {
  connection.dataset.transport = ctx.transport;
  setState('connected', ctx.transport === 'websocket' ? 'live' : `live (${ctx.transport})`);
});
let subscribedBefore = false;
sub.on('subscribed', (ctx) => {  // the first time from the render, then after each reconnect
  if (subscribedBefore && ctx.wasRecovering) {
    connection.dataset.recovered = String(ctx.recovered);
    if (ctx.recovered) connection.textContent = 'live, caught up';  // missed ones shown
  }
  subscribedBefore = true;
});

// ---- "N reading"
let presenceTimer;
function refreshPresence() {
  clearTimeout(presenceTimer);
  presenceTimer = setTimeout(async () => {
    try {
      const stats = await sub.presenceStats();
      readers.dataset.users = stats.numUsers;
      readers.textContent = `${stats.numUsers} reading`;
    } catch (err) { /* offline: the next subscribe asks again */ }
  }, 50);
}
for (const event of ['subscribed', 'join', 'leave']) sub.on(event, refreshPresence);

// ---- "... is typing"
const typingSub = client.newSubscription(live.typingChannel);
const typing = {
  timers: new Map(),  // name -> timeout that forgets them
  show() {
    const names = [...this.timers.keys()];
    typingLine.textContent = names.length === 0 ? ''
      : `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} typing…`;
  },
  started(name) {
    clearTimeout(this.timers.get(name));
    this.timers.set(name, setTimeout(() => this.stopped(name), 5000));
    this.show();
  },
  stopped(name) {
    clearTimeout(this.timers.get(name));
    if (this.timers.delete(name)) this.show();
  },
};
typingSub.on('publication', ({ data }) => {
  if (data.name === live.me) return;
  if (data.typing) typing.started(data.name); else typing.stopped(data.name);
});
typingSub.subscribe();

let typingSent = 0;
function sendTyping(state) {
  typingSent = state ? Date.now() : 0;
  typingSub.publish({ typing: state }).catch(() => {});  // best effort
}
textarea.addEventListener('input', () => {
  if (textarea.value && Date.now() - typingSent > 2000) sendTyping(true);
});

// ---- posting
form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const text = textarea.value.trim();
  if (!text) return;
  formError.textContent = '';
  submit.disabled = true;
  try {
    const res = await fetch(form.action, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json',
                 'X-CSRFToken': form.elements.csrfmiddlewaretoken.value },
      body: JSON.stringify({ text }),
    });
    const body = await res.json();
    if (!res.ok) throw new Error(body.error || `error ${res.status}`);
    render(body);  // at once here; the publication reaches the other pages
    textarea.value = '';
    if (typingSent) sendTyping(false);
  } catch (err) {
    formError.textContent = err.message;
  } finally {
    submit.disabled = false;
  }
});
