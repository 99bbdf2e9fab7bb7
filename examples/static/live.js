// live.js: subscribe a page to a channel from the position it was rendered at, so nothing
// published between the page's database read and its subscription is lost (centrifuge-js 5).
//
// `live` is what the server rendered into the page (tidings.contrib: Django's page_context or
// {% tidings_subscribe %}, Flask's tidings_subscribe(), FastAPI's live_page()):
//   {url, tokenUrl, subscriptionTokenUrl, channel, since: {offset, epoch} | null}
// onPublication(data, ctx): every publication after the render; a few may repeat what the page
//   already shows (published between the position read and the data read): dedupe by id.
// onResync(ctx): the server could not recover what was published since (history expired,
//   epoch changed): refetch the data, or reload the page.
// live.url may also be centrifuge-js' list of {transport, endpoint} (fallbacks), used as is;
// subscriptionOptions go to the subscription (e.g. {joinLeave: true}).
export function subscribeLive(Centrifuge, live, { onPublication, onResync,
                                                  fetch = globalThis.fetch,
                                                  centrifugeOptions = {},
                                                  subscriptionOptions = {} }) {
  async function token(url, body) {
    const init = body === undefined ? { credentials: 'same-origin' }
      : { method: 'POST', credentials: 'same-origin', body: JSON.stringify(body),
          headers: { 'Content-Type': 'application/json' } };
    const res = await fetch(url, init);
    if (res.status === 401 || res.status === 403) {
      throw new Centrifuge.UnauthorizedError(`${url}: ${res.status}`);  // stop, no retry
    }
    if (!res.ok) throw new Error(`${url}: ${res.status}`);  // the SDK retries
    return (await res.json()).token;
  }
  let url = live.url;
  if (typeof url === 'string' && url.startsWith('/')) {  // a path on this site (same proxy)
    url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${url}`;
  }
  // No token URL: the connection logs in another way (the connect hook reads the session).
  const auth = live.tokenUrl ? { getToken: () => token(live.tokenUrl) } : {};
  const client = new Centrifuge(url, { ...auth, ...centrifugeOptions });
  const options = { ...subscriptionOptions };
  if (live.since) options.since = live.since;  // recover everything after the render
  if (live.subscriptionTokenUrl) {
    options.getToken = (ctx) => token(live.subscriptionTokenUrl, { channel: ctx.channel });
  }
  const sub = client.newSubscription(live.channel, options);
  sub.on('publication', (ctx) => onPublication(ctx.data, ctx));
  sub.on('subscribed', (ctx) => {
    if (ctx.wasRecovering && !ctx.recovered) onResync(ctx);
  });
  sub.subscribe();
  client.connect();
  return { client, sub };
}
