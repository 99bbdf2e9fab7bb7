/*
 * loadgen.c - single-threaded epoll WebSocket fan-out load generator (Tidings benchmark suite).
 *              --transport uni_http_stream|uni_sse holds unidirectional HTTP streams instead.
 *
 * Build:   cc -O2 -o loadgen loadgen.c -lm        (or `make` in this directory)
 * Usage:   ./loadgen --help ; see README.md beside this file for worked examples.
 *
 * What it does, in phases, all inside one epoll loop on one thread:
 *   1. CONNECT  open --conns WebSocket connections (paced by --connect-rate, at most --max-pending
 *               TCP+HTTP handshakes in flight, each socket bound round-robin to --source-ips),
 *               send the --init messages, wait until each one received a frame containing --ready.
 *   2. PUBLISH  --rate publishes/s for --duration s, over keep-alive HTTP/1.1 POSTs (or as a text
 *               frame on connection 0 with --pub-ws); every body carries "ts":<CLOCK_MONOTONIC ns>.
 *   3. DRAIN    wait up to --drain s (ends early once every expected message arrived).
 *   Every "ts": found in a received text message counts as one delivery and feeds the latency
 *   histogram (receipt time - ts). --idle S replaces 2+3 by holding the connections S seconds;
 *   without --rate and --idle the run ends after phase 1 (connect-storm measurement).
 * At the end one JSON object is printed on stdout; progress goes to stderr (unless --quiet).
 * --transport uni_http_stream / uni_sse (Centrifugo unidirectional streams): instead of the
 *   WebSocket upgrade each connection sends one HTTP request (POST --path with --body as a JSON
 *   body, resp. GET --path; both templated, {tok} included), expects 200, then de-chunks the
 *   response and splits it into lines: every non-empty line (SSE: every "data:" line, prefix
 *   removed) is one message for --ready and the "ts": scan. No --init, no --pong-rule (the
 *   stream is one-way; its pings are just messages).
 * Targets must be loopback (127.0.0.0/8): this tool is for local benchmarks only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_LIST 64                 /* max repeats of --init, --header, --pub-header */
#define MAX_PONG 16
#define MAX_SRC 256
#define RBUF_SZ (256 * 1024)        /* shared receive buffer */
#define XBUF_SZ (256 * 1024)        /* template expansion buffer */
#define MAX_MSG (64u << 20)         /* largest accepted WebSocket message */
#define MAX_HTTP_HEAD 65536
#define TAG_TIMER 0xFFFFFFF0u

/* ------------------------------------------------------------------------------------ errors */

enum {
    E_SOCKET, E_EMFILE, E_BIND, E_ADDRNOTAVAIL, E_CONNREFUSED, E_CONNECT, E_HS_TIMEOUT,
    E_HS_STATUS, E_HS_TOO_LONG, E_EOF, E_RESET, E_READ, E_WRITE, E_OUTBUF, E_PROTOCOL,
    E_TOO_BIG, E_SERVER_CLOSE, E_HTTP_STATUS, E_HTTP_PARSE, E_PUB_SKIPPED, E_PUB_WS_DOWN, N_ERR
};
static const char *err_names[N_ERR] = {
    "socket", "emfile", "bind", "addrnotavail", "connrefused", "connect", "handshake_timeout",
    "handshake_status", "handshake_too_long", "eof", "reset", "read", "write", "out_buffer_full",
    "protocol", "message_too_big", "server_close", "http_status", "http_parse", "skipped",
    "ws_down",
};
static uint64_t errors[2][N_ERR]; /* [0] = subscriber connections, [1] = publisher */

/* ------------------------------------------------------------------------------------ options */

enum { T_WS, T_UNI_HTTP_STREAM, T_UNI_SSE };

static struct {
    const char *host, *path, *subprotocol, *ready, *tokens_file, *body;
    int transport;
    int port;
    uint32_t conns, channels, max_pending;
    struct in_addr dst, pub_dst, src[MAX_SRC];
    int nsrc;
    double connect_rate, hs_timeout, warmup, rate, duration, drain, idle, max_seconds;
    const char *headers[MAX_LIST], *inits[MAX_LIST], *pub_headers[MAX_LIST];
    int nheaders, ninits, npub_headers, init_after_first;
    size_t ready_len, out_limit;
    struct { const char *in, *out; size_t in_len, out_len; } pong[MAX_PONG];
    int npong;
    const char *pub_host, *pub_path, *pub_body;
    int pub_port, pub_ws, pub_ws_exclude_self, quiet;
    uint32_t pub_conns, pub_pipeline, pub_count;
} O;

static char **tokens;
static uint32_t ntokens;

/* ------------------------------------------------------------------------------------ clock */

static inline uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double sys_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* ------------------------------------------------------------------------------------ histogram
 * Log-linear, microsecond unit: 1 us buckets below 1024 us, then 512 sub-buckets per power of
 * two (<= 0.2 % relative error) up to 2^41 us. O(1) per sample, no allocation. */

#define H_LIN 1024
#define H_SUB 512
#define H_N (H_LIN + 31 * H_SUB)
typedef struct {
    uint64_t b[H_N];
    uint64_t n, max_ns;
    double sum_ns;
} hist;

static inline void hist_add(hist *h, uint64_t ns) {
    uint64_t us = ns / 1000;
    size_t k;
    if (us < H_LIN) {
        k = (size_t)us;
    } else {
        int msb = 63 - __builtin_clzll(us);
        if (msb > 40) { msb = 40; us = (1ull << 41) - 1; }
        int sh = msb - 9;
        k = H_LIN + (size_t)(msb - 10) * H_SUB + (size_t)((us >> sh) - H_SUB);
    }
    h->b[k]++;
    h->n++;
    h->sum_ns += (double)ns;
    if (ns > h->max_ns) h->max_ns = ns;
}

static double hist_pct_ms(const hist *h, double q) {
    if (!h->n) return 0;
    uint64_t target = (uint64_t)ceil(q * (double)h->n), acc = 0;
    if (target < 1) target = 1;
    for (size_t k = 0; k < H_N; k++) {
        acc += h->b[k];
        if (acc < target) continue;
        double mid_us;
        if (k < H_LIN) {
            mid_us = (double)k + 0.5;
        } else {
            size_t j = k - H_LIN, msb = j / H_SUB + 10, sub = j % H_SUB, sh = msb - 9;
            mid_us = (double)((sub + H_SUB) << sh) + (double)(1ull << sh) / 2;
        }
        double v = mid_us / 1000.0, mx = (double)h->max_ns / 1e6;
        return v > mx ? mx : v;
    }
    return (double)h->max_ns / 1e6;
}

static hist lat, conn_lat, pub_rtt;

/* ------------------------------------------------------------------------------------ templates
 * {i} connection index, {ch} channel index, {tok} token line, {ts} CLOCK_MONOTONIC ns, {seq}
 * publish sequence. Any other brace text (JSON) is copied literally. */

typedef struct {
    uint64_t i, ch, seq, ts;
    const char *tok;
} tvars;

static size_t u64str(char *out, uint64_t v) {
    char tmp[24];
    size_t n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    for (size_t k = 0; k < n; k++) out[k] = tmp[n - 1 - k];
    return n;
}

static char xbuf[XBUF_SZ];

/* Expands template t into xbuf; returns length or SIZE_MAX if it does not fit. */
static size_t expand(const char *t, const tvars *v) {
    size_t n = 0;
    for (const char *p = t; *p;) {
        if (*p == '{') {
            char num[24];
            const char *s = num;
            size_t sl = 0, adv = 0;
            if (!strncmp(p, "{i}", 3)) { sl = u64str(num, v->i); adv = 3; }
            else if (!strncmp(p, "{ch}", 4)) { sl = u64str(num, v->ch); adv = 4; }
            else if (!strncmp(p, "{ts}", 4)) { sl = u64str(num, v->ts); adv = 4; }
            else if (!strncmp(p, "{seq}", 5)) { sl = u64str(num, v->seq); adv = 5; }
            else if (!strncmp(p, "{tok}", 5)) { s = v->tok ? v->tok : ""; sl = strlen(s); adv = 5; }
            if (adv) {
                if (n + sl > XBUF_SZ) return SIZE_MAX;
                memcpy(xbuf + n, s, sl);
                n += sl;
                p += adv;
                continue;
            }
        }
        if (n >= XBUF_SZ) return SIZE_MAX;
        xbuf[n++] = *p++;
    }
    return n;
}

/* ------------------------------------------------------------------------------------ state */

enum { ST_NEW, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSED };
enum { F_SUB = 1, F_INIT = 2, F_WOUT = 4 };

typedef struct {
    int fd;
    uint8_t state, flags, frag_op;
    uint8_t hs_chunked, hs_cstate;  /* uni HTTP streams: chunked body?, de-chunking state */
    uint32_t hs_left;              /* uni HTTP streams: bytes left in the current chunk */
    uint64_t t_start;              /* connect() time, ns */
    char *in, *out, *frag;         /* leftover input, unsent output, fragmented message */
    uint32_t in_len, in_cap;
    uint32_t out_off, out_len, out_cap;
    uint32_t frag_len, frag_cap;
} conn;

enum { R_HEAD, R_BODY, R_CHUNK_SIZE, R_CHUNK_DATA, R_CHUNK_TRAILER };
#define MAX_PIPELINE 64
typedef struct {                   /* publisher-only fields, conns[O.conns + k] <-> pubx[k] */
    int busy, rstate, status, close_after, fast_reconnect;  /* busy: requests in flight */
    uint64_t remaining, t_closed;
    uint32_t q_head;                               /* the oldest request in flight */
    uint64_t q_expect[MAX_PIPELINE], q_sent[MAX_PIPELINE]; /* per request in flight, in order */
} pubx_t;

enum { PH_CONNECT, PH_PUBLISH, PH_DRAIN, PH_IDLE };
static const char *phase_names[] = {"connect", "publish", "drain", "idle"};

static conn *conns;                /* O.conns subscribers followed by O.pub_conns publishers */
static pubx_t *pubx;
static uint64_t *subs_ch;          /* currently subscribed connections per channel */
static int ep, tfd = -1;
static char rbuf[RBUF_SZ];
static char *hs_template, *pub_prefix;
static size_t pub_prefix_len;
static uint32_t rng_state = 2463534242u;

static int phase = PH_CONNECT;
static volatile sig_atomic_t got_signal;
static uint64_t t0, t_last_start, t_last_sub, t_phase_start, t_pub_start, t_pub_end, t_last_rx,
    t_idle_end, t_drain_end;
static uint32_t started, pending, scan_lo, pub_rr;
static uint64_t n_connected, n_open, n_subscribed, n_sub_now, n_settled;
static uint64_t pub_total, pub_scheduled; /* publishes planned for --duration, timer ticks so far */
static uint64_t pub_due, pub_backlog_max, pub_sent, published, expected, received, frames, seq;
static uint64_t pub_requests; /* answered 2xx; published = pub_requests * --pub-count */
static double cpu_pub_start, cpu_pub_end;

static int header_has(const char *h, size_t hl, const char *name, const char *value);

static inline int is_pub(uint32_t idx) { return idx >= O.conns; }
static inline int is_pending(const conn *c) {
    return c->state == ST_CONNECTING || c->state == ST_HANDSHAKE;
}

static void die(const char *msg) {
    fprintf(stderr, "loadgen: %s\n", msg);
    exit(2);
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) die("out of memory");
    return q;
}

static void grow(char **buf, uint32_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    *buf = xrealloc(*buf, c);
    *cap = (uint32_t)c;
}

static void ep_set(uint32_t idx, conn *c, uint32_t events, int op) {
    struct epoll_event ev = {.events = events, .data.u32 = idx};
    if (epoll_ctl(ep, op, c->fd, &ev) < 0 && op != EPOLL_CTL_DEL) perror("epoll_ctl");
}

static void conn_close(uint32_t idx, conn *c, int err) {
    if (c->state == ST_CLOSED || c->state == ST_NEW) return;
    int pub = is_pub(idx);
    if (pub) {
        pubx_t *px = &pubx[idx - O.conns];
        /* an idle keep-alive connection closed by the server is no error: reconnect at once */
        px->fast_reconnect = err < 0 || (err == E_EOF && !px->busy);
        if (px->fast_reconnect) err = -1;
        px->busy = 0;
        px->q_head = 0;
        px->rstate = R_HEAD;
        px->t_closed = mono_ns();
    } else {
        if (is_pending(c)) pending--;
        if (c->state == ST_OPEN) n_open--;
        if (c->flags & F_SUB) { subs_ch[idx % O.channels]--; n_sub_now--; }
        else n_settled++; /* closed before it ever subscribed */
    }
    if (err >= 0) errors[pub][err]++;
    if (c->fd >= 0) close(c->fd);
    free(c->in); free(c->out); free(c->frag);
    c->in = c->out = c->frag = NULL;
    c->in_len = c->in_cap = c->out_off = c->out_len = c->out_cap = 0;
    c->frag_len = c->frag_cap = 0;
    c->frag_op = 0;
    c->hs_chunked = c->hs_cstate = 0;
    c->hs_left = 0;
    c->fd = -1;
    c->flags = 0;
    c->state = ST_CLOSED;
}

static int errno_kind(int e) {
    switch (e) {
    case ECONNREFUSED: return E_CONNREFUSED;
    case ECONNRESET: case EPIPE: return E_RESET;
    case EADDRNOTAVAIL: return E_ADDRNOTAVAIL;
    case EMFILE: case ENFILE: return E_EMFILE;
    default: return -1;
    }
}

/* ------------------------------------------------------------------------------------ output */

static void conn_write(uint32_t idx, conn *c, const void *data, size_t n) {
    const char *p = data;
    if (c->state == ST_CLOSED || c->state == ST_NEW) return;
    if (c->out_len == c->out_off && c->state != ST_CONNECTING) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w == (ssize_t)n) return;
        if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                int k = errno_kind(errno);
                conn_close(idx, c, k >= 0 ? k : E_WRITE);
                return;
            }
            w = 0;
        }
        p += w;
        n -= (size_t)w;
    }
    if ((size_t)(c->out_len - c->out_off) + n > O.out_limit) { conn_close(idx, c, E_OUTBUF); return; }
    if (c->out_off) { /* compact */
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    grow(&c->out, &c->out_cap, (size_t)c->out_len + n);
    memcpy(c->out + c->out_len, p, n);
    c->out_len += (uint32_t)n;
    if (!(c->flags & F_WOUT) && c->state != ST_CONNECTING) {
        c->flags |= F_WOUT;
        ep_set(idx, c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
    }
}

static void conn_flush(uint32_t idx, conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            int k = errno_kind(errno);
            conn_close(idx, c, k >= 0 ? k : E_WRITE);
            return;
        }
        c->out_off += (uint32_t)w;
    }
    free(c->out);
    c->out = NULL;
    c->out_off = c->out_len = c->out_cap = 0;
    if (c->flags & F_WOUT) {
        c->flags &= (uint8_t)~F_WOUT;
        ep_set(idx, c, EPOLLIN, EPOLL_CTL_MOD);
    }
}

static inline uint32_t rng(void) {
    uint32_t x = rng_state;
    x ^= x << 13; x ^= x >> 17; x ^= x << 5;
    return rng_state = x;
}

/* Sends one masked WebSocket frame (clients must mask, RFC 6455 5.3). */
static void ws_send(uint32_t idx, conn *c, int op, const char *p, size_t n) {
    uint8_t stackbuf[16384];
    uint8_t *f = n + 14 <= sizeof stackbuf ? stackbuf : xrealloc(NULL, n + 14);
    size_t h = 0;
    f[h++] = (uint8_t)(0x80 | op);
    if (n < 126) {
        f[h++] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        f[h++] = 0x80 | 126; f[h++] = (uint8_t)(n >> 8); f[h++] = (uint8_t)n;
    } else {
        f[h++] = 0x80 | 127;
        for (int s = 56; s >= 0; s -= 8) f[h++] = (uint8_t)((uint64_t)n >> s);
    }
    uint32_t key = rng();
    uint8_t *m = f + h;
    memcpy(m, &key, 4);
    h += 4;
    for (size_t k = 0; k < n; k++) f[h + k] = (uint8_t)p[k] ^ m[k & 3];
    conn_write(idx, c, f, h + n);
    if (f != stackbuf) free(f);
}

/* ------------------------------------------------------------------------------------ subscriber */

static void mark_subscribed(uint32_t idx, conn *c, uint64_t now) {
    c->flags |= F_SUB;
    subs_ch[idx % O.channels]++;
    n_sub_now++;
    n_subscribed++;
    n_settled++;
    t_last_sub = now;
    hist_add(&conn_lat, now - c->t_start);
}

static void send_inits(uint32_t idx, conn *c, uint64_t now) {
    c->flags |= F_INIT;
    tvars v = {.i = idx, .ch = idx % O.channels, .tok = ntokens ? tokens[idx % ntokens] : NULL};
    for (int k = 0; k < O.ninits && c->state == ST_OPEN; k++) {
        size_t n = expand(O.inits[k], &v);
        if (n == SIZE_MAX) die("--init message too long after expansion");
        ws_send(idx, c, 1, xbuf, n);
    }
    if (!O.ready && c->state == ST_OPEN) mark_subscribed(idx, c, now);
}

static int pong_check(uint32_t idx, conn *c, const char *m, size_t n) {
    for (int r = 0; r < O.npong; r++) {
        if (n == O.pong[r].in_len && !memcmp(m, O.pong[r].in, n)) {
            ws_send(idx, c, 1, O.pong[r].out, O.pong[r].out_len);
            return 1;
        }
    }
    return 0;
}

static void on_message(uint32_t idx, conn *c, const char *m, size_t n, uint64_t now) {
    frames++;
    if (!(c->flags & F_INIT)) {
        send_inits(idx, c, now);
        if (c->state != ST_OPEN) return;
    }
    if (O.npong) {
        if (pong_check(idx, c, m, n)) return;
        /* a ping may be batched with other messages, one per line (Tidings, Centrifugo) */
        const char *p = m, *end = m + n, *nl;
        if (memchr(m, '\n', n)) {
            while (p < end) {
                nl = memchr(p, '\n', (size_t)(end - p));
                if (!nl) nl = end;
                pong_check(idx, c, p, (size_t)(nl - p));
                if (c->state != ST_OPEN) return;
                p = nl + 1;
            }
        }
    }
    if (!(c->flags & F_SUB) && O.ready && memmem(m, n, O.ready, O.ready_len))
        mark_subscribed(idx, c, now);
    /* deliveries: every "ts":<int> is one message */
    const char *p = m, *end = m + n;
    while ((p = memmem(p, (size_t)(end - p), "\"ts\":", 5)) != NULL) {
        p += 5;
        while (p < end && *p == ' ') p++;
        uint64_t v = 0;
        const char *d = p;
        while (p < end && *p >= '0' && *p <= '9') v = v * 10 + (uint64_t)(*p++ - '0');
        if (p == d) continue;
        received++;
        hist_add(&lat, now > v ? now - v : 0);
        t_last_rx = now;
    }
}

static void ws_frame(uint32_t idx, conn *c, int fin, int op, char *pl, size_t n, uint64_t now) {
    switch (op) {
    case 0: /* continuation */
        if (!c->frag_op) { conn_close(idx, c, E_PROTOCOL); return; }
        /* fallthrough */
    case 1:
    case 2:
        if (op && c->frag_op) { conn_close(idx, c, E_PROTOCOL); return; }
        if (fin && !c->frag_op) { on_message(idx, c, pl, n, now); return; }
        if ((size_t)c->frag_len + n > MAX_MSG) { conn_close(idx, c, E_TOO_BIG); return; }
        if (op) c->frag_op = (uint8_t)op;
        grow(&c->frag, &c->frag_cap, (size_t)c->frag_len + n);
        memcpy(c->frag + c->frag_len, pl, n);
        c->frag_len += (uint32_t)n;
        if (fin) {
            char *f = c->frag;
            uint32_t fl = c->frag_len;
            c->frag = NULL; c->frag_len = c->frag_cap = 0; c->frag_op = 0;
            on_message(idx, c, f, fl, now);
            free(f);
        }
        return;
    case 8: { /* close: echo the status code, then drop the connection */
        ws_send(idx, c, 8, pl, n >= 2 ? 2 : 0);
        conn_close(idx, c, E_SERVER_CLOSE);
        return;
    }
    case 9: ws_send(idx, c, 10, pl, n); return;
    case 10: return;
    default: conn_close(idx, c, E_PROTOCOL); return;
    }
}

static void on_open(uint32_t idx, conn *c, uint64_t now) {
    c->state = ST_OPEN;
    pending--;
    n_connected++;
    n_open++;
    if (!O.init_after_first) send_inits(idx, c, now);
}

/* Parses handshake response and frames from buf; returns bytes consumed. */
static size_t ws_process(uint32_t idx, conn *c, char *buf, size_t len, uint64_t now) {
    size_t off = 0;
    if (c->state == ST_HANDSHAKE) {
        char *end = memmem(buf, len, "\r\n\r\n", 4);
        if (!end) {
            if (len > MAX_HTTP_HEAD) conn_close(idx, c, E_HS_TOO_LONG);
            return 0;
        }
        if (len < 12 || memcmp(buf, "HTTP/1.", 7) || memcmp(buf + 8, " 101", 4)) {
            conn_close(idx, c, E_HS_STATUS);
            return len;
        }
        off = (size_t)(end - buf) + 4;
        on_open(idx, c, now);
        if (c->state != ST_OPEN) return len;
    }
    while (off < len) {
        uint8_t *p = (uint8_t *)buf + off;
        size_t avail = len - off, hl = 2;
        if (avail < 2) break;
        uint64_t n = p[1] & 0x7f;
        if (n == 126) {
            if (avail < 4) break;
            n = ((uint64_t)p[2] << 8) | p[3];
            hl = 4;
        } else if (n == 127) {
            if (avail < 10) break;
            n = 0;
            for (int k = 0; k < 8; k++) n = (n << 8) | p[2 + k];
            hl = 10;
        }
        int masked = p[1] & 0x80;
        if (masked) hl += 4;
        if (n > MAX_MSG) { conn_close(idx, c, E_TOO_BIG); return len; }
        if (avail < hl + n) break;
        char *pl = (char *)p + hl;
        if (masked)
            for (size_t k = 0; k < n; k++) pl[k] ^= (char)p[hl - 4 + (k & 3)];
        off += hl + n;
        ws_frame(idx, c, p[0] & 0x80, p[0] & 0x0f, pl, n, now);
        if (c->state != ST_OPEN) return len;
    }
    return off;
}

/* ------------------------------------------------------------------------------------ uni streams
 * The response body (de-chunked when chunked) is appended to c->frag and cut into lines; a line
 * may span reads and chunks. */

enum { CS_SIZE, CS_DATA, CS_CRLF };

static void uni_lines(uint32_t idx, conn *c, uint64_t now) {
    char *p = c->frag, *end = c->frag + c->frag_len, *nl;
    while (p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        char *m = p;
        size_t n = (size_t)(nl - p);
        p = nl + 1;
        if (n && m[n - 1] == '\r') n--;
        if (O.transport == T_UNI_SSE) {
            /* only "data:" fields carry messages; "event:", "id:", comments, blanks are skipped */
            if (n < 5 || memcmp(m, "data:", 5)) continue;
            m += 5; n -= 5;
            if (n && *m == ' ') { m++; n--; }
        }
        if (!n) continue;
        on_message(idx, c, m, n, now);
        if (c->state != ST_OPEN) return;
    }
    size_t rest = (size_t)(end - p);
    if (rest > MAX_MSG) { conn_close(idx, c, E_TOO_BIG); return; }
    if (rest && p != c->frag) memmove(c->frag, p, rest);
    c->frag_len = (uint32_t)rest;
}

static void uni_append(conn *c, const char *p, size_t n) {
    grow(&c->frag, &c->frag_cap, (size_t)c->frag_len + n);
    memcpy(c->frag + c->frag_len, p, n);
    c->frag_len += (uint32_t)n;
}

/* Parses the response head, then the (chunked) body; returns bytes consumed. */
static size_t uni_process(uint32_t idx, conn *c, char *buf, size_t len, uint64_t now) {
    size_t off = 0;
    if (c->state == ST_HANDSHAKE) {
        char *end = memmem(buf, len, "\r\n\r\n", 4);
        if (!end) {
            if (len > MAX_HTTP_HEAD) conn_close(idx, c, E_HS_TOO_LONG);
            return 0;
        }
        if (len < 12 || memcmp(buf, "HTTP/1.", 7) || memcmp(buf + 8, " 200", 4)) {
            conn_close(idx, c, E_HS_STATUS);
            return len;
        }
        off = (size_t)(end - buf) + 4;
        c->hs_chunked = (uint8_t)header_has(buf, off, "transfer-encoding", "chunked");
        c->hs_cstate = CS_SIZE;
        on_open(idx, c, now);
        if (c->state != ST_OPEN) return len;
    }
    if (!c->hs_chunked) { /* identity body up to EOF */
        uni_append(c, buf + off, len - off);
        uni_lines(idx, c, now);
        return len;
    }
    while (off < len) {
        char *p = buf + off;
        size_t avail = len - off;
        if (c->hs_cstate == CS_SIZE) {
            char *e = memmem(p, avail, "\r\n", 2);
            if (!e) {
                if (avail > 256) { conn_close(idx, c, E_PROTOCOL); return len; }
                break;
            }
            char *q;
            unsigned long long n = strtoull(p, &q, 16);
            if (q == p || n > MAX_MSG) { conn_close(idx, c, E_PROTOCOL); return len; }
            off += (size_t)(e - p) + 2;
            if (!n) { conn_close(idx, c, E_SERVER_CLOSE); return len; } /* the stream ended */
            c->hs_left = (uint32_t)n;
            c->hs_cstate = CS_DATA;
        } else if (c->hs_cstate == CS_DATA) {
            size_t take = c->hs_left < avail ? c->hs_left : avail;
            uni_append(c, p, take);
            off += take;
            c->hs_left -= (uint32_t)take;
            if (!c->hs_left) c->hs_cstate = CS_CRLF;
        } else {
            if (avail < 2) break;
            if (p[0] != '\r' || p[1] != '\n') { conn_close(idx, c, E_PROTOCOL); return len; }
            off += 2;
            c->hs_cstate = CS_SIZE;
        }
    }
    uni_lines(idx, c, now);
    if (c->state != ST_OPEN) return len;
    return off;
}

/* ------------------------------------------------------------------------------------ publisher */

static size_t pub_body(uint64_t *ch_out, uint64_t *ts_out) {
    uint64_t ch = seq % O.channels;
    tvars v = {.ch = ch, .seq = seq, .ts = mono_ns()};
    size_t n = expand(O.pub_body, &v);
    if (n == SIZE_MAX) die("--pub-body too long after expansion");
    *ch_out = ch;
    *ts_out = v.ts;
    seq++;
    return n;
}

static void pub_complete(pubx_t *px, uint64_t now) {
    /* answers come in request order (HTTP/1.1): this one is the oldest in flight */
    uint32_t q = px->q_head;
    if (px->status >= 200 && px->status < 300) {
        pub_requests++;
        published += O.pub_count;
        expected += px->q_expect[q];
        hist_add(&pub_rtt, now - px->q_sent[q]);
    } else {
        errors[1][E_HTTP_STATUS]++;
    }
    px->q_head = (q + 1) % MAX_PIPELINE;
    px->busy--;
    px->rstate = R_HEAD;
}

static int header_has(const char *h, size_t hl, const char *name, const char *value) {
    /* case-insensitive "name:" line whose value contains value (value may be NULL) */
    size_t nl = strlen(name);
    for (const char *p = h; p < h + hl;) {
        const char *e = memmem(p, (size_t)(h + hl - p), "\r\n", 2);
        if (!e) e = h + hl;
        if ((size_t)(e - p) > nl && !strncasecmp(p, name, nl) && p[nl] == ':') {
            if (!value) return 1;
            size_t vl = strlen(value);
            for (const char *q = p + nl + 1; q + vl <= e; q++)
                if (!strncasecmp(q, value, vl)) return 1;
        }
        p = e + 2;
    }
    return 0;
}

static size_t pub_process(uint32_t idx, conn *c, char *buf, size_t len, uint64_t now) {
    pubx_t *px = &pubx[idx - O.conns];
    size_t off = 0;
    while (off < len) {
        char *p = buf + off;
        size_t avail = len - off;
        if (!px->busy) { conn_close(idx, c, E_HTTP_PARSE); return len; }
        switch (px->rstate) {
        case R_HEAD: {
            char *end = memmem(p, avail, "\r\n\r\n", 4);
            if (!end) {
                if (avail > MAX_HTTP_HEAD) { conn_close(idx, c, E_HTTP_PARSE); return len; }
                return off;
            }
            size_t hl = (size_t)(end - p) + 4;
            if (hl < 12 || memcmp(p, "HTTP/1.", 7)) { conn_close(idx, c, E_HTTP_PARSE); return len; }
            px->status = atoi(p + 9);
            px->close_after = header_has(p, hl, "connection", "close");
            off += hl;
            if (px->status >= 100 && px->status < 200) break; /* 100 Continue: next head */
            if (header_has(p, hl, "transfer-encoding", "chunked")) {
                px->rstate = R_CHUNK_SIZE;
            } else {
                const char *q = NULL;
                for (const char *s = p; s + 16 < p + hl; s++)
                    if (s[0] == '\n' && !strncasecmp(s + 1, "content-length:", 15)) { q = s + 16; break; }
                px->remaining = q ? strtoull(q, NULL, 10) : 0;
                if (px->remaining) px->rstate = R_BODY;
                else pub_complete(px, now);
            }
            break;
        }
        case R_BODY:
        case R_CHUNK_DATA: {
            uint64_t take = px->remaining < avail ? px->remaining : avail;
            off += take;
            px->remaining -= take;
            if (!px->remaining) {
                if (px->rstate == R_BODY) pub_complete(px, now);
                else px->rstate = R_CHUNK_SIZE;
            }
            break;
        }
        case R_CHUNK_SIZE: {
            char *e = memmem(p, avail, "\r\n", 2);
            if (!e) return off;
            uint64_t n = strtoull(p, NULL, 16);
            off += (size_t)(e - p) + 2;
            if (n) { px->remaining = n + 2; px->rstate = R_CHUNK_DATA; }
            else px->rstate = R_CHUNK_TRAILER;
            break;
        }
        case R_CHUNK_TRAILER: {
            if (avail < 2) return off;
            if (p[0] == '\r' && p[1] == '\n') { off += 2; pub_complete(px, now); break; }
            char *e = memmem(p, avail, "\r\n\r\n", 4);
            if (!e) return off;
            off += (size_t)(e - p) + 4;
            pub_complete(px, now);
            break;
        }
        }
        if (c->state != ST_OPEN) return len;
        if (!px->busy && px->close_after) { conn_close(idx, c, -1); return len; }
    }
    return off;
}

static void pub_send_http(uint32_t pk) {
    uint32_t idx = O.conns + pk;
    conn *c = &conns[idx];
    pubx_t *px = &pubx[pk];
    static char req[XBUF_SZ + 4096];
    uint64_t ch, ts;
    size_t bl = pub_body(&ch, &ts);
    size_t n = 0;
    const char *mark = strstr(O.pub_path, "{ch}");
    if (mark) {
        n = (size_t)snprintf(req, 4096, "POST %.*s%llu%s HTTP/1.1\r\n", (int)(mark - O.pub_path),
                             O.pub_path, (unsigned long long)ch, mark + 4);
    } else {
        n = (size_t)snprintf(req, 4096, "POST %s HTTP/1.1\r\n", O.pub_path);
    }
    memcpy(req + n, pub_prefix, pub_prefix_len);
    n += pub_prefix_len;
    n += u64str(req + n, bl);
    memcpy(req + n, "\r\n\r\n", 4);
    n += 4;
    if (n + bl > sizeof req) die("publish request too long");
    memcpy(req + n, xbuf, bl);
    n += bl;
    uint32_t q = (px->q_head + (uint32_t)px->busy) % MAX_PIPELINE;
    px->q_expect[q] = subs_ch[ch] * O.pub_count;
    px->q_sent[q] = ts;
    if (!px->busy) px->rstate = R_HEAD;
    px->busy++;
    pub_sent++;
    conn_write(idx, c, req, n);
}

static void pub_send_ws(void) {
    conn *c = &conns[0];
    if (c->state != ST_OPEN) { errors[1][E_PUB_WS_DOWN]++; seq++; return; }
    uint64_t ch, ts;
    size_t bl = pub_body(&ch, &ts);
    uint64_t exp = subs_ch[ch];
    if (O.pub_ws_exclude_self && (c->flags & F_SUB) && ch == 0 && exp) exp--;
    pub_sent++;
    ws_send(0, c, 1, xbuf, bl);
    if (c->state == ST_OPEN) { pub_requests++; published += O.pub_count; expected += exp * O.pub_count; }
}

static void pub_dispatch(void) {
    if (pub_due > pub_backlog_max) pub_backlog_max = pub_due;
    while (pub_due) {
        if (O.pub_ws) { pub_send_ws(); pub_due--; continue; }
        uint32_t k, found = UINT32_MAX;
        for (k = 0; k < O.pub_conns; k++) {
            uint32_t j = (pub_rr + k) % O.pub_conns;
            if (conns[O.conns + j].state == ST_OPEN && pubx[j].busy < (int)O.pub_pipeline) {
                found = j;
                break;
            }
        }
        if (found == UINT32_MAX) return; /* all busy: stays due, sent as soon as one is free */
        pub_rr = found + 1;
        pub_send_http(found);
        pub_due--;
    }
}

/* ------------------------------------------------------------------------------------ sockets */

static void conn_start(uint32_t idx) {
    conn *c = &conns[idx];
    int pub = is_pub(idx);
    c->t_start = mono_ns();
    c->state = ST_CONNECTING;
    if (!pub) pending++;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) { conn_close(idx, c, errno == EMFILE || errno == ENFILE ? E_EMFILE : E_SOCKET); return; }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!pub && O.nsrc) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr = O.src[idx % (uint32_t)O.nsrc]};
        setsockopt(c->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            conn_close(idx, c, errno == EADDRNOTAVAIL ? E_ADDRNOTAVAIL : E_BIND);
            return;
        }
    }
    struct sockaddr_in da = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)(pub ? O.pub_port : O.port)),
                             .sin_addr = pub ? O.pub_dst : O.dst};
    if (connect(c->fd, (struct sockaddr *)&da, sizeof da) < 0 && errno != EINPROGRESS) {
        int k = errno_kind(errno);
        conn_close(idx, c, k >= 0 ? k : E_CONNECT);
        return;
    }
    ep_set(idx, c, EPOLLIN | EPOLLOUT, EPOLL_CTL_ADD);
}

static void on_connected(uint32_t idx, conn *c) {
    int err = 0;
    socklen_t el = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0) err = errno;
    if (err == EINPROGRESS || err == EALREADY) return;
    if (err) {
        int k = errno_kind(err);
        conn_close(idx, c, k >= 0 ? k : E_CONNECT);
        return;
    }
    ep_set(idx, c, EPOLLIN, EPOLL_CTL_MOD);
    if (is_pub(idx)) { c->state = ST_OPEN; return; }
    c->state = ST_HANDSHAKE;
    tvars v = {.i = idx, .ch = idx % O.channels, .tok = ntokens ? tokens[idx % ntokens] : NULL};
    if (O.transport == T_UNI_HTTP_STREAM) { /* head, Content-Length, templated JSON body */
        size_t bl = expand(O.body, &v);
        if (bl == SIZE_MAX) die("--body too long after expansion");
        char *body = xrealloc(NULL, bl);
        memcpy(body, xbuf, bl);
        size_t n = expand(hs_template, &v);
        if (n == SIZE_MAX || n + 64 + bl > XBUF_SZ) die("request too long after expansion");
        n += (size_t)snprintf(xbuf + n, 64, "Content-Length: %zu\r\n\r\n", bl);
        memcpy(xbuf + n, body, bl);
        free(body);
        conn_write(idx, c, xbuf, n + bl);
        return;
    }
    size_t n = expand(hs_template, &v);
    if (n == SIZE_MAX) die("handshake request too long after expansion");
    conn_write(idx, c, xbuf, n);
}

static void on_readable(uint32_t idx, conn *c) {
    char *data;
    size_t len;
    ssize_t n;
    n = recv(c->fd, rbuf, RBUF_SZ, 0);
    if (n > 0 && c->in_len) { /* a partial frame is waiting: append to it */
        grow(&c->in, &c->in_cap, (size_t)c->in_len + (size_t)n);
        memcpy(c->in + c->in_len, rbuf, (size_t)n);
        c->in_len += (uint32_t)n;
        data = c->in;
        len = c->in_len;
    } else {
        data = rbuf;
        len = n > 0 ? (size_t)n : 0;
    }
    if (n == 0) { conn_close(idx, c, E_EOF); return; }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        int k = errno_kind(errno);
        conn_close(idx, c, k >= 0 ? k : E_READ);
        return;
    }
    uint64_t now = mono_ns();
    size_t used = is_pub(idx) ? pub_process(idx, c, data, len, now)
                  : O.transport == T_WS ? ws_process(idx, c, data, len, now)
                                        : uni_process(idx, c, data, len, now);
    if (c->state == ST_CLOSED) return;
    size_t rest = len - used;
    if (data == rbuf) {
        if (rest) {
            grow(&c->in, &c->in_cap, rest);
            memcpy(c->in, rbuf + used, rest);
            c->in_len = (uint32_t)rest;
        }
    } else if (!rest) {
        free(c->in);
        c->in = NULL;
        c->in_len = c->in_cap = 0;
    } else if (used) {
        memmove(c->in, c->in + used, rest);
        c->in_len = (uint32_t)rest;
        if (c->in_cap > 65536 && c->in_cap > 4 * rest) { /* do not pin a big buffer per conn */
            c->in = xrealloc(c->in, rest);
            c->in_cap = (uint32_t)rest;
        }
    }
}

/* ------------------------------------------------------------------------------------ report */

static void print_hist(const char *name, const hist *h) {
    printf("\"%s\":{\"n\":%llu,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f,"
           "\"mean\":%.3f}",
           name, (unsigned long long)h->n, hist_pct_ms(h, .50), hist_pct_ms(h, .90),
           hist_pct_ms(h, .99), hist_pct_ms(h, .999), (double)h->max_ns / 1e6,
           h->n ? h->sum_ns / (double)h->n / 1e6 : 0.0);
}

static void finish(const char *reason) {
    uint64_t now = mono_ns();
    double wall = (double)(now - t0) / 1e9, cpu = cpu_s();
    if (phase == PH_PUBLISH) { t_pub_end = now; cpu_pub_end = cpu; }
    double dur = 0, cpu_pct;
    if (t_pub_start) dur = (double)(t_pub_end - t_pub_start) / 1e9;
    else if (phase == PH_IDLE) dur = (double)(now - t_phase_start) / 1e9;
    if (t_pub_start && dur > 0) cpu_pct = 100.0 * (cpu_pub_end - cpu_pub_start) / dur;
    else cpu_pct = wall > 0 ? 100.0 * cpu / wall : 0;
    double rx_span = t_pub_start && t_last_rx > t_pub_start ? (double)(t_last_rx - t_pub_start) / 1e9 : 0;
    if (rx_span < dur) rx_span = dur;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);

    printf("{\"conns\":%u,\"connected\":%llu,\"open_at_end\":%llu,\"subscribed\":%llu,"
           "\"not_subscribed\":%llu,\"subscribed_at_end\":%llu,",
           O.conns, (unsigned long long)n_connected, (unsigned long long)n_open,
           (unsigned long long)n_subscribed, (unsigned long long)(O.conns - n_subscribed),
           (unsigned long long)n_sub_now);
    if (n_subscribed) printf("\"subscribe_time_s\":%.3f,", (double)(t_last_sub - t0) / 1e9);
    else printf("\"subscribe_time_s\":null,");
    print_hist("connect_ms", &conn_lat);
    printf(",\"channels\":%u,\"rate\":%g,\"pub_sent\":%llu,\"published\":%llu,\"pub_backlog_max\":%llu,",
           O.channels, O.rate, (unsigned long long)pub_sent, (unsigned long long)published,
           (unsigned long long)pub_backlog_max);
    printf("\"pub_requests\":%llu,\"pub_pipeline\":%u,\"pub_count\":%u,",
           (unsigned long long)pub_requests, O.pub_pipeline, O.pub_count);
    print_hist("pub_rtt_ms", &pub_rtt);
    printf(",\"expected\":%llu,\"received\":%llu,\"frames\":%llu,\"loss\":%.6f,"
           "\"deliveries_per_s\":%.1f,\"offered_per_s\":%.1f,",
           (unsigned long long)expected, (unsigned long long)received, (unsigned long long)frames,
           expected ? ((double)expected - (double)received) / (double)expected : 0.0,
           rx_span > 0 ? (double)received / rx_span : 0.0, dur > 0 ? (double)expected / dur : 0.0);
    print_hist("lat_ms", &lat);
    printf(",\"gen_cpu_s\":%.3f,\"gen_sys_s\":%.3f,\"gen_cpu_pct\":%.1f,\"gen_maxrss_mb\":%.1f,\"nofile\":%llu,"
           "\"errors\":{",
           cpu, sys_s(), cpu_pct, ru.ru_maxrss / 1024.0, (unsigned long long)rl.rlim_cur);
    int first = 1;
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < N_ERR; k++)
            if (errors[s][k]) {
                printf("%s\"%s%s\":%llu", first ? "" : ",", s ? "pub_" : "", err_names[k],
                       (unsigned long long)errors[s][k]);
                first = 0;
            }
    printf("},\"duration_s\":%.3f,\"wall_s\":%.3f,\"end\":\"%s\"}\n", dur, wall, reason);
    fflush(stdout);
    exit(0);
}

/* ------------------------------------------------------------------------------------ phases */

static void start_publishing(uint64_t now) {
    phase = PH_PUBLISH;
    t_phase_start = t_pub_start = now;
    cpu_pub_start = cpu_s();
    pub_total = (uint64_t)llround(O.rate * O.duration);
    if (!pub_total) pub_total = 1;
    uint64_t interval = (uint64_t)(1e9 / O.rate);
    if (!interval) interval = 1;
    struct itimerspec its = {
        .it_interval = {(time_t)(interval / 1000000000ull), (long)(interval % 1000000000ull)},
        .it_value = {0, 1}, /* first publish right away */
    };
    if (timerfd_settime(tfd, 0, &its, NULL) < 0) die("timerfd_settime");
}

static void tick(uint64_t now) {
    if (got_signal) finish("signal");
    if ((double)(now - t0) / 1e9 >= O.max_seconds) finish("max_seconds");

    /* open new subscriber connections, paced */
    if (started < O.conns) {
        uint64_t target = O.conns;
        if (O.connect_rate > 0) {
            double allowed = (double)(now - t0) / 1e9 * O.connect_rate + 1;
            if (allowed < target) target = (uint64_t)allowed;
        }
        while (started < target && pending < O.max_pending) {
            conn_start(started++);
            t_last_start = now;
        }
    }
    /* handshake timeouts: pending connections started in index order, so stop at the first
     * pending one that is still young */
    while (scan_lo < started && !is_pending(&conns[scan_lo])) scan_lo++;
    for (uint32_t k = scan_lo; k < started; k++) {
        if (!is_pending(&conns[k])) continue;
        if (now < conns[k].t_start || (double)(now - conns[k].t_start) / 1e9 < O.hs_timeout) break;
        conn_close(k, &conns[k], E_HS_TIMEOUT);
    }
    /* publisher connections: (re)connect, at most every 100 ms */
    if (!O.pub_ws && O.rate > 0)
        for (uint32_t k = 0; k < O.pub_conns; k++) {
            conn *c = &conns[O.conns + k];
            if (c->state == ST_NEW || (c->state == ST_CLOSED && (pubx[k].fast_reconnect ||
                                                                 now - pubx[k].t_closed > 100000000ull)))
                conn_start(O.conns + k);
        }

    switch (phase) {
    case PH_CONNECT: {
        int settled = started == O.conns && n_settled >= O.conns;
        int warm_over = started == O.conns && (double)(now - t_last_start) / 1e9 >= O.warmup;
        if (!settled && !warm_over) break;
        if (O.idle > 0) {
            phase = PH_IDLE;
            t_phase_start = now;
            t_idle_end = now + (uint64_t)(O.idle * 1e9);
        } else if (O.rate > 0) {
            start_publishing(now);
        } else {
            finish("done");
        }
        break;
    }
    case PH_PUBLISH:
        if ((double)(now - t_pub_start) / 1e9 >= O.duration) {
            struct itimerspec off = {0};
            timerfd_settime(tfd, 0, &off, NULL);
            errors[1][E_PUB_SKIPPED] += pub_due;
            pub_due = 0;
            phase = PH_DRAIN;
            t_pub_end = now;
            cpu_pub_end = cpu_s();
            t_drain_end = now + (uint64_t)(O.drain * 1e9);
        } else {
            pub_dispatch();
        }
        break;
    case PH_DRAIN: {
        int busy = 0;
        for (uint32_t k = 0; k < O.pub_conns && !O.pub_ws; k++) busy |= pubx[k].busy;
        if (now >= t_drain_end || (!busy && received >= expected)) finish("done");
        break;
    }
    case PH_IDLE:
        if (now >= t_idle_end) finish("done");
        break;
    }
}

/* ------------------------------------------------------------------------------------ setup */

static struct in_addr parse_loopback(const char *s, const char *what) {
    struct in_addr a;
    if (!strcmp(s, "localhost")) s = "127.0.0.1";
    if (inet_pton(AF_INET, s, &a) != 1) {
        fprintf(stderr, "loadgen: %s: not an IPv4 address: %s\n", what, s);
        exit(2);
    }
    if ((ntohl(a.s_addr) >> 24) != 127) {
        fprintf(stderr, "loadgen: %s: only loopback (127.0.0.0/8) targets are allowed: %s\n", what, s);
        exit(2);
    }
    return a;
}

static void load_tokens(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) { perror(path); exit(2); }
    char *line = NULL;
    size_t cap = 0, alloc = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (!n) continue;
        if (ntokens == alloc) { alloc = alloc ? alloc * 2 : 1024; tokens = xrealloc(tokens, alloc * sizeof *tokens); }
        tokens[ntokens++] = strdup(line);
    }
    free(line);
    fclose(f);
    if (!ntokens) die("--tokens file has no lines");
}

static void usage(void) {
    fputs(
        "usage: loadgen [options]       (all targets must be 127.0.0.0/8)\n"
        "target      --host 127.0.0.1 --port P --path /connection/websocket\n"
        "            --transport ws|uni_http_stream|uni_sse (ws)  --body JSON (uni_http_stream)\n"
        "            --header 'Name: value' (repeatable, handshake)  --subprotocol NAME\n"
        "connections --conns N  --source-ips 127.0.0.1,127.0.0.2  --connect-rate R (0=max)\n"
        "            --max-pending 1000  --handshake-timeout 10\n"
        "session     --init MSG (repeatable)  --init-after-first  --channels K  --tokens FILE\n"
        "            --ready SUBSTR  --pong-rule IN=OUT (repeatable)\n"
        "            templates in path/headers/init: {i} {ch} {tok}\n"
        "publish     --rate R  --duration S  --warmup S (10)  --drain S (2)\n"
        "            --pub-host H --pub-port P --pub-path /publish --pub-header 'N: v' (repeatable)\n"
        "            --pub-body '{\"ts\":{ts}}' (templates {ts} {ch} {seq})  --pub-conns 1\n"
        "            --pub-pipeline N (requests in flight per connection, 1..64; 1)\n"
        "            --pub-count K (publications per request, e.g. a batch of K; 1)\n"
        "            --pub-ws [--pub-ws-exclude-self]   (publish as a text frame on connection 0)\n"
        "other       --idle S  --max-seconds 120  --out-limit BYTES (1048576)  --quiet\n",
        stderr);
}

static void parse_args(int argc, char **argv) {
    O.host = "127.0.0.1"; O.port = 8000; O.path = "/connection/websocket";
    O.conns = 1; O.channels = 1; O.max_pending = 1000; O.hs_timeout = 10;
    O.warmup = 10; O.duration = 5; O.drain = 2; O.max_seconds = 120;
    O.pub_path = "/publish"; O.pub_body = "{\"ts\":{ts}}"; O.pub_conns = 1;
    O.pub_pipeline = 1; O.pub_count = 1;
    O.out_limit = 1 << 20;
    const char *src = NULL;
    enum {
        O_HOST = 256, O_PORT, O_PATH, O_HEADER, O_CONNS, O_SRC, O_CRATE, O_MAXPEND, O_HSTO, O_SUBP,
        O_INIT, O_IAF, O_CHANNELS, O_TOKENS, O_READY, O_PONG, O_PHOST, O_PPORT, O_PPATH, O_PBODY,
        O_PHEADER, O_PCONNS, O_PWS, O_PWSX, O_RATE, O_DUR, O_WARM, O_DRAIN, O_IDLE, O_MAXS,
        O_OUTLIM, O_QUIET, O_TRANSPORT, O_BODY, O_PPIPE, O_PCOUNT, O_HELP
    };
    static const struct option lo[] = {
        {"host", 1, 0, O_HOST}, {"port", 1, 0, O_PORT}, {"path", 1, 0, O_PATH},
        {"header", 1, 0, O_HEADER}, {"conns", 1, 0, O_CONNS}, {"source-ips", 1, 0, O_SRC},
        {"connect-rate", 1, 0, O_CRATE}, {"max-pending", 1, 0, O_MAXPEND},
        {"handshake-timeout", 1, 0, O_HSTO}, {"subprotocol", 1, 0, O_SUBP},
        {"init", 1, 0, O_INIT}, {"init-after-first", 0, 0, O_IAF}, {"channels", 1, 0, O_CHANNELS},
        {"tokens", 1, 0, O_TOKENS}, {"ready", 1, 0, O_READY}, {"pong-rule", 1, 0, O_PONG},
        {"pub-host", 1, 0, O_PHOST}, {"pub-port", 1, 0, O_PPORT}, {"pub-path", 1, 0, O_PPATH},
        {"pub-body", 1, 0, O_PBODY}, {"pub-header", 1, 0, O_PHEADER},
        {"pub-conns", 1, 0, O_PCONNS}, {"pub-ws", 0, 0, O_PWS},
        {"pub-ws-exclude-self", 0, 0, O_PWSX}, {"rate", 1, 0, O_RATE},
        {"duration", 1, 0, O_DUR}, {"warmup", 1, 0, O_WARM}, {"drain", 1, 0, O_DRAIN},
        {"idle", 1, 0, O_IDLE}, {"max-seconds", 1, 0, O_MAXS}, {"out-limit", 1, 0, O_OUTLIM},
        {"quiet", 0, 0, O_QUIET}, {"transport", 1, 0, O_TRANSPORT}, {"body", 1, 0, O_BODY},
        {"pub-pipeline", 1, 0, O_PPIPE}, {"pub-count", 1, 0, O_PCOUNT},
        {"help", 0, 0, O_HELP}, {0, 0, 0, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (o) {
        case O_HOST: O.host = optarg; break;
        case O_PORT: O.port = atoi(optarg); break;
        case O_PATH: O.path = optarg; break;
        case O_HEADER:
            if (O.nheaders == MAX_LIST) die("too many --header");
            O.headers[O.nheaders++] = optarg; break;
        case O_CONNS: O.conns = (uint32_t)strtoul(optarg, NULL, 10); break;
        case O_SRC: src = optarg; break;
        case O_CRATE: O.connect_rate = atof(optarg); break;
        case O_MAXPEND: O.max_pending = (uint32_t)strtoul(optarg, NULL, 10); break;
        case O_HSTO: O.hs_timeout = atof(optarg); break;
        case O_SUBP: O.subprotocol = optarg; break;
        case O_INIT:
            if (O.ninits == MAX_LIST) die("too many --init");
            O.inits[O.ninits++] = optarg; break;
        case O_IAF: O.init_after_first = 1; break;
        case O_CHANNELS: O.channels = (uint32_t)strtoul(optarg, NULL, 10); break;
        case O_TOKENS: O.tokens_file = optarg; break;
        case O_READY: O.ready = optarg; O.ready_len = strlen(optarg); break;
        case O_PONG: {
            char *eq = strchr(optarg, '=');
            if (!eq || O.npong == MAX_PONG) die("--pong-rule needs IN=OUT (at most 16)");
            /* split at the first '=': '{}={}' -> '{}' / '{}', '2=3' -> '2' / '3' */
            O.pong[O.npong].in = strndup(optarg, (size_t)(eq - optarg));
            O.pong[O.npong].in_len = (size_t)(eq - optarg);
            O.pong[O.npong].out = eq + 1; O.pong[O.npong].out_len = strlen(eq + 1);
            O.npong++;
            break;
        }
        case O_PHOST: O.pub_host = optarg; break;
        case O_PPORT: O.pub_port = atoi(optarg); break;
        case O_PPATH: O.pub_path = optarg; break;
        case O_PBODY: O.pub_body = optarg; break;
        case O_PHEADER:
            if (O.npub_headers == MAX_LIST) die("too many --pub-header");
            O.pub_headers[O.npub_headers++] = optarg; break;
        case O_PCONNS: O.pub_conns = (uint32_t)strtoul(optarg, NULL, 10); break;
        case O_PPIPE:
            O.pub_pipeline = (uint32_t)strtoul(optarg, NULL, 10);
            if (O.pub_pipeline < 1 || O.pub_pipeline > MAX_PIPELINE) die("--pub-pipeline: 1..64");
            break;
        case O_PCOUNT:
            O.pub_count = (uint32_t)strtoul(optarg, NULL, 10);
            if (O.pub_count < 1) die("--pub-count must be >= 1");
            break;
        case O_PWS: O.pub_ws = 1; break;
        case O_PWSX: O.pub_ws_exclude_self = 1; break;
        case O_RATE: O.rate = atof(optarg); break;
        case O_DUR: O.duration = atof(optarg); break;
        case O_WARM: O.warmup = atof(optarg); break;
        case O_DRAIN: O.drain = atof(optarg); break;
        case O_IDLE: O.idle = atof(optarg); break;
        case O_MAXS: O.max_seconds = atof(optarg); break;
        case O_OUTLIM: O.out_limit = strtoull(optarg, NULL, 10); break;
        case O_QUIET: O.quiet = 1; break;
        case O_TRANSPORT:
            if (!strcmp(optarg, "ws")) O.transport = T_WS;
            else if (!strcmp(optarg, "uni_http_stream")) O.transport = T_UNI_HTTP_STREAM;
            else if (!strcmp(optarg, "uni_sse")) O.transport = T_UNI_SSE;
            else die("--transport must be ws, uni_http_stream or uni_sse");
            break;
        case O_BODY: O.body = optarg; break;
        case O_HELP: usage(); exit(0);
        default: usage(); exit(2);
        }
    }
    if (optind < argc) { usage(); exit(2); }
    if (!O.conns || !O.channels || !O.max_pending || O.port <= 0 || O.port > 65535) die("bad --conns/--channels/--max-pending/--port");
    if (O.max_seconds <= 0) die("--max-seconds must be > 0");
    if (O.transport != T_WS) {
        if (O.ninits || O.npong || O.pub_ws || O.init_after_first || O.subprotocol)
            die("--transport uni_*: no --init, --pong-rule, --pub-ws, --init-after-first, --subprotocol");
        if (O.transport == T_UNI_HTTP_STREAM && !O.body) O.body = "{\"token\":\"{tok}\"}";
    } else if (O.body) {
        die("--body needs --transport uni_http_stream");
    }
    if (O.pub_ws) O.pub_conns = 0;
    else if (!O.pub_conns) O.pub_conns = 1;
    if (O.rate <= 0) O.pub_conns = 0;
    if (!O.pub_host) O.pub_host = O.host;
    if (!O.pub_port) O.pub_port = O.port;
    O.dst = parse_loopback(O.host, "--host");
    O.pub_dst = parse_loopback(O.pub_host, "--pub-host");
    if (src) {
        char *s = strdup(src), *save = NULL;
        for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (O.nsrc == MAX_SRC) die("too many --source-ips");
            O.src[O.nsrc++] = parse_loopback(t, "--source-ips");
        }
        free(s);
    }
    if (O.tokens_file) load_tokens(O.tokens_file);
}

static char *build_hs_template(void) {
    size_t cap = 4096 + strlen(O.path) + strlen(O.host);
    for (int k = 0; k < O.nheaders; k++) cap += strlen(O.headers[k]) + 2;
    if (O.subprotocol) cap += strlen(O.subprotocol) + 32;
    char *t = xrealloc(NULL, cap);
    if (O.transport != T_WS) { /* uni_http_stream: Content-Length and body added per connection */
        int n = snprintf(t, cap, "%s %s HTTP/1.1\r\nHost: %s:%d\r\n%s",
                         O.transport == T_UNI_SSE ? "GET" : "POST", O.path, O.host, O.port,
                         O.transport == T_UNI_SSE ? "Accept: text/event-stream\r\n"
                                                  : "Content-Type: application/json\r\n");
        for (int k = 0; k < O.nheaders; k++) n += snprintf(t + n, cap - (size_t)n, "%s\r\n", O.headers[k]);
        if (O.transport == T_UNI_SSE) snprintf(t + n, cap - (size_t)n, "\r\n");
        return t;
    }
    int n = snprintf(t, cap,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
                     O.path, O.host, O.port);
    if (O.subprotocol) n += snprintf(t + n, cap - (size_t)n, "Sec-WebSocket-Protocol: %s\r\n", O.subprotocol);
    for (int k = 0; k < O.nheaders; k++) n += snprintf(t + n, cap - (size_t)n, "%s\r\n", O.headers[k]);
    snprintf(t + n, cap - (size_t)n, "\r\n");
    return t;
}

static char *build_pub_prefix(void) {
    size_t cap = 4096 + strlen(O.pub_path) + strlen(O.pub_host);
    int has_ct = 0;
    for (int k = 0; k < O.npub_headers; k++) {
        cap += strlen(O.pub_headers[k]) + 2;
        if (!strncasecmp(O.pub_headers[k], "content-type:", 13)) has_ct = 1;
    }
    char *t = xrealloc(NULL, cap);
    /* the request line is written per publish: --pub-path may hold {ch} */
    int n = snprintf(t, cap, "Host: %s:%d\r\n", O.pub_host, O.pub_port);
    if (!has_ct) n += snprintf(t + n, cap - (size_t)n, "Content-Type: application/json\r\n");
    for (int k = 0; k < O.npub_headers; k++) n += snprintf(t + n, cap - (size_t)n, "%s\r\n", O.pub_headers[k]);
    n += snprintf(t + n, cap - (size_t)n, "Content-Length: ");
    pub_prefix_len = (size_t)n;
    return t;
}

static void on_signal(int s) { (void)s; got_signal = 1; }

static void raise_nofile(void) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rlim_t want = (rlim_t)O.conns + O.pub_conns + 64;
    if (rl.rlim_max < want) { /* root may raise the hard limit too */
        struct rlimit r2 = {want, want};
        if (setrlimit(RLIMIT_NOFILE, &r2) == 0) return;
    }
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < want)
        fprintf(stderr, "loadgen: warning: RLIMIT_NOFILE %llu < %llu needed\n",
                (unsigned long long)rl.rlim_cur, (unsigned long long)want);
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    raise_nofile();
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    uint32_t total = O.conns + O.pub_conns;
    conns = calloc(total, sizeof *conns);
    pubx = calloc(O.pub_conns ? O.pub_conns : 1, sizeof *pubx);
    subs_ch = calloc(O.channels, sizeof *subs_ch);
    if (!conns || !pubx || !subs_ch) die("out of memory");
    for (uint32_t k = 0; k < total; k++) conns[k].fd = -1;
    hs_template = build_hs_template();
    pub_prefix = build_pub_prefix();

    ep = epoll_create1(EPOLL_CLOEXEC);
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (ep < 0 || tfd < 0) die("epoll/timerfd");
    struct epoll_event tev = {.events = EPOLLIN, .data.u32 = TAG_TIMER};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);

    static struct epoll_event evs[1024];
    t0 = mono_ns();
    uint64_t next_progress = t0 + 1000000000ull;
    tick(t0);
    for (;;) {
        int timeout = (phase == PH_CONNECT && started < O.conns) ? 1 : 10;
        int n = epoll_wait(ep, evs, 1024, timeout);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int k = 0; k < n; k++) {
            uint32_t idx = evs[k].data.u32, e = evs[k].events;
            if (idx == TAG_TIMER) {
                uint64_t exp;
                if (read(tfd, &exp, sizeof exp) == sizeof exp && phase == PH_PUBLISH) {
                    if (exp > pub_total - pub_scheduled) exp = pub_total - pub_scheduled;
                    pub_scheduled += exp;
                    pub_due += exp;
                    pub_dispatch();
                }
                continue;
            }
            conn *c = &conns[idx];
            if (c->state == ST_CLOSED || c->state == ST_NEW) continue;
            if (c->state == ST_CONNECTING) {
                on_connected(idx, c);
                if (c->state == ST_CONNECTING || c->state == ST_CLOSED) continue;
                if (!(e & (EPOLLIN | EPOLLERR | EPOLLHUP))) continue;
            }
            if ((e & EPOLLOUT) && c->out_len) conn_flush(idx, c);
            if ((e & (EPOLLIN | EPOLLERR | EPOLLHUP)) && c->state != ST_CLOSED) on_readable(idx, c);
        }
        /* a publisher that just became idle can take the next due publish */
        if (phase == PH_PUBLISH && pub_due) pub_dispatch();
        uint64_t now = mono_ns();
        tick(now);
        if (!O.quiet && now >= next_progress) {
            next_progress += 1000000000ull;
            fprintf(stderr,
                    "[%6.1fs] %-7s started=%u open=%llu sub=%llu pending=%u pub=%llu recv=%llu "
                    "exp=%llu\n",
                    (double)(now - t0) / 1e9, phase_names[phase], started,
                    (unsigned long long)n_open, (unsigned long long)n_sub_now, pending,
                    (unsigned long long)published, (unsigned long long)received,
                    (unsigned long long)expected);
        }
    }
}
