'use strict';
// Node socket.io 4 peer for the Tidings fan-out benchmark.
//
//   NODE_ENV=production node benchmarks/peers/node-socketio/server.js --port 8004
//
// Same frames as the python-socketio peer:
//   WS  ws://127.0.0.1:P/socket.io/?EIO=4&transport=websocket
//       server -> 0{"sid":...}
//       either (one frame, may be sent right after the WS opens)
//         client -> 40{"room":"bench<K>"}  server -> 40{"sid":...}, 42["ready","bench<K>"]
//       or (two steps; the join MUST wait for 40{ -- socket.io closes the
//       connection on an event for a namespace whose connect is still pending)
//         client -> 40  server -> 40{"sid":...}
//         client -> 42["join","bench<K>"]  server -> 42["ready","bench<K>"]
//       server -> 42["msg",{"ts":...}] per publish;  server 2 -> client 3
//   POST /publish?ch=<K>  body = JSON text, emitted as event "msg" to room bench<K>.

const http = require('http');
const { Server } = require('socket.io');

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}
const port = parseInt(arg('--port', '8004'), 10);
const host = arg('--host', '127.0.0.1');

let io;

function reply(res, status, text) {
  res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

// Requests outside /socket.io/ fall through to this handler.
const httpServer = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (req.method !== 'POST' || url.pathname !== '/publish') {
    reply(res, 404, 'not found');
    return;
  }
  const ch = url.searchParams.get('ch') || '0';
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let data;
    try {
      data = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch (e) {
      reply(res, 400, 'body must be JSON');
      return;
    }
    // socket.io serialises event args with JSON.stringify, so {"ts":123}
    // arrives as 42["msg",{"ts":123}].
    io.to('bench' + ch).emit('msg', data);
    reply(res, 200, 'ok');
  });
});
// Keep the load generator's keep-alive publish connection open while idle
// (Node's default is 5 s).
httpServer.keepAliveTimeout = 75000;
httpServer.headersTimeout = 76000;

io = new Server(httpServer, {
  serveClient: false,
  cors: { origin: '*' },
  // Library defaults, spelled out: server sends "2" every 25 s, client must
  // answer "3" within 20 s or it is dropped.
  pingInterval: 25000,
  pingTimeout: 20000,
});

function join(socket, room) {
  room = String(room);
  socket.join(room);
  socket.emit('ready', room);
}

io.on('connection', (socket) => {
  // Single-frame subscribe: 40{"room":"bench<K>"} (socket.io v4 auth payload).
  const auth = socket.handshake.auth;
  if (auth && auth.room !== undefined && auth.room !== null) join(socket, auth.room);
  // Two-step subscribe: 40, wait for 40{"sid":..}, then 42["join","bench<K>"].
  socket.on('join', (room) => join(socket, room));
});

httpServer.listen({ port, host, backlog: 4096 }, () => {
  console.log(`node-socketio peer listening on ${host}:${port}`);
});

function shutdown() {
  io.close();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
