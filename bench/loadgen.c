/* IRC load generator for bench/compare.py, in C: the scenarios, options, protocol behaviour and
 * JSON output of bench/loadgen.py, at a fraction of its CPU cost.
 *
 * Theory of operation
 * -------------------
 * One thread, one level-triggered epoll loop, one non-blocking socket (TCP_NODELAY) per IRC
 * connection; the scenario code in main() runs the loop until a condition or a deadline
 * (poll_until()), so it reads top to bottom like loadgen.py's coroutines.
 *
 * Received bytes are handled in whole lines: a partial last line is kept in the connection's
 * tail and put back in front of the next read, so a " PRIVMSG " split across two reads is
 * counted once, in the read that completes its line. Most receivers only count " PRIVMSG "
 * (memmem) and look for "PING"; setup and the latency/credit receivers split lines.
 *
 * The 32-byte text is "SSSSS QQQQQQQQQ " + 16 x (sender id, sequence number); send times are
 * kept here, per sender, indexed by sequence number (only for senders whose messages reach a
 * latency receiver). Flow control, latency receivers, TCP_QUICKACK and the CPU/RSS readings
 * are those of loadgen.py: see its docstring.
 *
 * idle50k is idle with a measured hold at the end (--hold seconds, every client registered and
 * silent: the server's CPU time over it, and the bytes the clients received meanwhile). Its
 * clients bind 127.0.0.(2 + i % K) (--sources K) with IP_BIND_ADDRESS_NO_PORT before connect():
 * one source address has only the ephemeral port range (about 28,000) to reach one server port
 * from. It needs RLIMIT_NOFILE above the client count, and checks that before connecting.
 *
 * Transports (--transport): tcp (the default); tls (OpenSSL, non-blocking SSL_do_handshake /
 * SSL_read / SSL_write on the socket, no certificate check, a full handshake per connection,
 * read-ahead on); ws and wss (the IRCv3 WebSocket transport, over TCP or TLS: an HTTP/1.1
 * upgrade to --ws-path with --ws-protocol (text.ircv3.net by default, "" for none) and an
 * optional --ws-origin, then one masked frame per IRC line, without CRLF; received text or
 * binary messages become lines, pings are answered, a close frame ends the connection). A
 * connection registers once its transport carries lines (on_ready()). The server's
 * Sec-WebSocket-Accept is not checked.
 *
 * Build: gcc -O2 -std=c11 -Wall -Wextra -o loadgen bench/loadgen.c -lssl -lcrypto (compare.py
 * does this; without OpenSSL's headers it builds with -DLOADGEN_NO_TLS: tcp and ws only).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#ifndef LOADGEN_NO_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

#define HEAD 1024          /* room for a partial line in front of the read buffer */
#define RBUF (256 * 1024)  /* bytes per recv() */
#define NICK_MAX 30
#define PRIVMSG " PRIVMSG "
#define PAD "xxxxxxxxxxxxxxxx" /* "%05d %09d " is 16 bytes; the text is 32 in all */

typedef struct { char *p; size_t len, cap; } Buf;

typedef struct Conn {
    int fd, sid;             /* sid: sender id, -1 if this client does not send */
    bool connected, registered, joined, closed;
    bool parse, record_latency, credit_by_sender, quickack;
    struct Conn *credit_partner;
    long long received;      /* PRIVMSG lines received over the connection's life */
    char nick[NICK_MAX + 2], last_error[200], prefix[64];
    int prefix_len, tail_len;
    char tail[HEAD];
    Buf out;                 /* bytes the socket did not take yet */
    /* --transport: wire = bytes can go through (TCP connected, TLS handshake done); ready =
     * IRC lines can go through (wire, and the WebSocket upgrade answered with 101) */
    bool wire, ready;
    void *ssl;               /* SSL * with TLS, else NULL */
    double t_start;          /* when connect() was called (registration latency) */
    Buf hs;                  /* WebSocket: the HTTP response so far, then partial frames */
    unsigned char mask[4];   /* WebSocket: this client's frame mask */
} Conn;

typedef struct { double *t; size_t n, cap; bool keep; } Times; /* send times by sequence no. */

static struct {
    int ep, port, nconns, nstarted, nregistered, nsenders;
    int nsources;            /* > 0: bind client i to 127.0.0.(2 + i % nsources) */
    long long rbytes;        /* bytes received, all connections */
    bool quickack, setup, sending, measuring, closing, label;
    const char *caps;        /* capabilities every client requests ("" for none) */
    bool tls, ws;            /* --transport tls / ws / wss */
    const char *ws_path, *ws_protocol, *ws_origin;
    void *ssl_ctx;           /* SSL_CTX * with TLS */
    Conn *conns, **senders;
    Times *sent;
    int *credits;
    double *lat, *reglat;    /* fan-out/private latencies; connect-to-001 times */
    size_t nlat, caplat, nreglat, capreglat;
    char setup_error[600], errors[3][300];
    int nerrors;
} R = {.ep = -1};

static char rbuf[HEAD + RBUF];
static Buf msgbuf;
static long clk_tck;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void *grow(void *p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return p;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    if (!(p = realloc(p, c * size))) die("out of memory");
    *cap = c;
    return p;
}

static void buf_add(Buf *b, const char *s, size_t n) {
    b->p = grow(b->p, &b->cap, b->len + n, 1);
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* -- errors ------------------------------------------------------------------------------- */

/* The source address of client i: 127.0.0.1 (the kernel's choice for a connection to it) or,
 * with --sources K, 127.0.0.(2 + i % K). */
static in_addr_t source_addr(int i) {
    return htonl(INADDR_LOOPBACK + (R.nsources > 0 ? 1 + (unsigned)(i % R.nsources) : 0));
}

static const char *source_text(int i) {
    static char text[INET_ADDRSTRLEN];
    struct in_addr a = {.s_addr = source_addr(i)};
    return inet_ntop(AF_INET, &a, text, sizeof text);
}

/* A connection failed: during setup that ends the run (first reason wins); later it is one of
 * the errors reported with the results. */
static void fail(Conn *c, const char *why) {
    if (R.setup) {
        if (!R.setup_error[0])
            snprintf(R.setup_error, sizeof R.setup_error, "SetupError: %s: %s", c->nick, why);
    } else if (R.nerrors++ < 3) {
        snprintf(R.errors[R.nerrors - 1], sizeof R.errors[0], "%s: %s", c->nick, why);
    }
}

static void conn_close(Conn *c, const char *why) {
    if (c->closed) return;
#ifndef LOADGEN_NO_TLS
    if (c->ssl) SSL_free(c->ssl);  /* no close_notify: an abort, as loadgen.py's */
    c->ssl = NULL;
#endif
    close(c->fd);  /* also leaves the epoll set */
    c->closed = true;
    if (!R.closing) {
        char msg[sizeof c->last_error + 8];
        snprintf(msg, sizeof msg, "lost: %s", c->last_error[0] ? c->last_error : why);
        fail(c, msg);
    }
}

/* -- transports: bytes through TCP or TLS ------------------------------------------------- */

#ifndef LOADGEN_NO_TLS
/* An SSL_* call returned k <= 0: -1 with errno EAGAIN when TLS waits for the socket, 0 for the
 * peer's close, else -1 with errno EPROTO and the reason in c->last_error. */
static ssize_t tls_result(Conn *c, int k) {
    int e = SSL_get_error(c->ssl, k);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return errno = EAGAIN, -1;
    if (e == SSL_ERROR_ZERO_RETURN) return 0;
    if (e == SSL_ERROR_SYSCALL && errno) return -1;
    unsigned long code = ERR_get_error();
    if (!c->last_error[0])
        snprintf(c->last_error, sizeof c->last_error, "TLS: %s",
                 code ? ERR_reason_error_string(code) : "connection closed");
    ERR_clear_error();
    return errno = EPROTO, -1;
}
#endif

/* Bytes that TLS holds already (read ahead from the socket, or a record half returned). */
static bool tls_pending(Conn *c) {
#ifndef LOADGEN_NO_TLS
    return c->ssl && SSL_has_pending(c->ssl);
#else
    (void)c;
    return false;
#endif
}

static ssize_t raw_send(Conn *c, const char *p, size_t n) {
#ifndef LOADGEN_NO_TLS
    if (c->ssl) {
        int k = n ? SSL_write(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n) : 0;
        return k > 0 || !n ? k : tls_result(c, k);
    }
#endif
    return send(c->fd, p, n, MSG_NOSIGNAL);
}

static ssize_t raw_recv(Conn *c, char *p, size_t n) {
#ifndef LOADGEN_NO_TLS
    if (c->ssl) {
        int k = SSL_read(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
        return k > 0 ? k : tls_result(c, k);
    }
#endif
    return recv(c->fd, p, n, 0);
}

/* -- writing ------------------------------------------------------------------------------ */

static void set_events(Conn *c, unsigned ev) {
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(R.ep, EPOLL_CTL_MOD, c->fd, &e) < 0) die("epoll_ctl: %s", strerror(errno));
}

static void flush(Conn *c) {
    ssize_t n = raw_send(c, c->out.p, c->out.len);
    if (n < 0 && errno != EAGAIN) {
        conn_close(c, strerror(errno));
        return;
    }
    if (n > 0) {
        c->out.len -= (size_t)n;
        memmove(c->out.p, c->out.p + n, c->out.len);
    }
    if (!c->out.len) set_events(c, EPOLLIN);
}

/* Bytes to the transport: sent now if nothing is queued, else queued (until EPOLLOUT). With TLS,
 * a write that must wait is retried with the queue, which starts with the same bytes
 * (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE allow the rest). */
static void raw_write(Conn *c, const char *s, size_t len) {
    if (c->closed) return;
    if (!c->out.len && c->wire) {
        ssize_t n = raw_send(c, s, len);
        if (n < 0 && errno != EAGAIN) {
            conn_close(c, strerror(errno));
            return;
        }
        if (n == (ssize_t)len) return;
        if (n > 0) s += n, len -= n;
        set_events(c, EPOLLIN | EPOLLOUT);
    }
    buf_add(&c->out, s, len);
}

/* One WebSocket frame header, client to server (masked), for a payload of n bytes. */
static size_t ws_header(unsigned char *h, unsigned opcode, size_t n, const unsigned char mask[4]) {
    size_t k = 2;
    h[0] = (unsigned char)(0x80 | opcode);
    if (n < 126) {
        h[1] = (unsigned char)(0x80 | n);
    } else if (n < 65536) {
        h[1] = 0x80 | 126, h[2] = (unsigned char)(n >> 8), h[3] = (unsigned char)n, k = 4;
    } else {
        h[1] = 0x80 | 127, k = 10;
        for (int i = 0; i < 8; i++) h[2 + i] = (unsigned char)((unsigned long long)n >> (56 - 8 * i));
    }
    memcpy(h + k, mask, 4);
    return k + 4;
}

static Buf wsout;

/* A WebSocket frame per IRC line (the IRCv3 transport: no CRLF), masked, appended to wsout. */
static void ws_frame(Conn *c, unsigned opcode, const char *p, size_t n) {
    wsout.p = grow(wsout.p, &wsout.cap, wsout.len + n + 14, 1);
    unsigned char *h = (unsigned char *)wsout.p + wsout.len;
    size_t k = ws_header(h, opcode, n, c->mask);
    for (size_t i = 0; i < n; i++) h[k + i] = (unsigned char)p[i] ^ c->mask[i & 3];
    wsout.len += k + n;
}

/* IRC lines (each ending in \r\n) to the server: as they are, or one WebSocket frame each. */
static void conn_write(Conn *c, const char *s, size_t len) {
    if (!R.ws) {
        raw_write(c, s, len);
        return;
    }
    wsout.len = 0;
    for (const char *e = s + len, *nl; s < e; s = nl + 1) {
        nl = memchr(s, '\n', (size_t)(e - s));
        if (!nl) nl = e;
        size_t n = (size_t)(nl - s);
        if (n && s[n - 1] == '\r') n--;
        if (n) ws_frame(c, R.ws_protocol && !strcmp(R.ws_protocol, "binary.ircv3.net") ? 2 : 1, s, n);
    }
    raw_write(c, wsout.p, wsout.len);
}

static void put_digits(char *p, unsigned long v, int width) {
    for (int i = width - 1; i >= 0; i--, v /= 10) p[i] = (char)('0' + v % 10);
}

/* Write k new PRIVMSGs (to this sender's target) in one write. */
static void send_msgs(Conn *c, long k) {
    if (!R.sending || c->closed || k <= 0) return;
    Times *t = &R.sent[c->sid];
    size_t seq0 = t->n, line = (size_t)c->prefix_len + 34;
    if (t->keep) {
        t->t = grow(t->t, &t->cap, t->n + k, sizeof(double));
        double ts = now();
        for (long i = 0; i < k; i++) t->t[seq0 + i] = ts;
    }
    t->n += k;
    msgbuf.p = grow(msgbuf.p, &msgbuf.cap, line * k, 1);
    char *p = msgbuf.p;
    for (long i = 0; i < k; i++, p += line) {
        memcpy(p, c->prefix, c->prefix_len);
        char *q = p + c->prefix_len;
        put_digits(q, c->sid, 5);
        q[5] = ' ';
        put_digits(q + 6, seq0 + i, 9);
        q[15] = ' ';
        memcpy(q + 16, PAD "\r\n", 18);
    }
    conn_write(c, msgbuf.p, line * k);
}

/* -- reading ------------------------------------------------------------------------------ */

static bool starts(const char *s, size_t n, const char *prefix) {
    size_t k = strlen(prefix);
    return n >= k && memcmp(s, prefix, k) == 0;
}

static void setup_line(Conn *c, const char *line, size_t n) {
    char text[200];
    snprintf(text, sizeof text, "%.*s", (int)n, line);
    if (starts(line, n, "ERROR")) {
        snprintf(c->last_error, sizeof c->last_error, "%s", text);
        fail(c, text);
        return;
    }
    const char *sp = memchr(line, ' ', n);
    if (line[0] != ':' || !sp || (size_t)(sp - line) + 4 > n) return;
    const char *cmd = sp + 1;
    size_t rest = n - (size_t)(cmd - line);
    if (rest > 3 && cmd[3] != ' ') return;  /* only 3-digit numerics matter here */
    if (!memcmp(cmd, "001", 3)) {
        if (!c->registered) {
            R.nregistered++;
            R.reglat = grow(R.reglat, &R.capreglat, R.nreglat + 1, sizeof(double));
            R.reglat[R.nreglat++] = now() - c->t_start;
        }
        c->registered = true;
    } else if (!memcmp(cmd, "366", 3)) {
        c->joined = true;
    } else if (!memcmp(cmd, "433", 3) && !c->registered && strlen(c->nick) < NICK_MAX) {
        strcat(c->nick, "_");  /* nickname in use (a leftover client?): try another */
        char msg[64];
        conn_write(c, msg, (size_t)snprintf(msg, sizeof msg, "NICK %s\r\n", c->nick));
    } else {
        static const char *const fatal[] = {"432", "433", "436", "465", "471", "473", "474", "475"};
        for (size_t i = 0; i < sizeof fatal / sizeof *fatal; i++)
            if (!memcmp(cmd, fatal[i], 3)) {
                fail(c, text);
                return;
            }
    }
}

static void parse_lines(Conn *c, const char *p, const char *end) {
    double t = now();
    bool credit = c->credit_by_sender;
    for (const char *nl; p < end; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)(nl - p);
        if (n && p[n - 1] == '\r') n--;
        if (!n) continue;
        const char *line = p;
        if (line[0] == '@') {  /* IRCv3 tags (--caps): skip them */
            const char *sp = memchr(line, ' ', n);
            if (!sp) continue;
            n -= (size_t)(sp + 1 - line);
            line = sp + 1;
        }
        if (starts(line, n, "PING")) {
            char pong[600];
            int k = snprintf(pong, sizeof pong, "PONG%.*s\r\n", (int)(n - 4), line + 4);
            conn_write(c, pong, (size_t)k < sizeof pong ? (size_t)k : sizeof pong - 1);
        } else if (memmem(line, n, PRIVMSG, 9)) {
            if (!c->record_latency && !credit) continue;
            const char *s = line + n - 2;
            while (s > line && !(s[0] == ' ' && s[1] == ':')) s--;
            s += 2;
            if (line + n - s < 15 || s[5] != ' ') continue;  /* not one of ours */
            long sid = 0, seq = 0;
            bool ok = true;
            for (int i = 0; i < 15; i++) {
                if (i == 5) continue;
                ok = ok && s[i] >= '0' && s[i] <= '9';
                if (i < 5) sid = sid * 10 + (s[i] - '0');
                else seq = seq * 10 + (s[i] - '0');
            }
            if (!ok || sid >= R.nsenders || (size_t)seq >= R.sent[sid].n) continue;
            if (c->record_latency && R.measuring && R.sent[sid].keep) {
                R.lat = grow(R.lat, &R.caplat, R.nlat + 1, sizeof(double));
                R.lat[R.nlat++] = t - R.sent[sid].t[seq];
            }
            if (credit) R.credits[sid]++;
        } else {
            setup_line(c, line, n);
        }
    }
    if (credit)
        for (int i = 0; i < R.nsenders; i++)
            if (R.credits[i]) send_msgs(R.senders[i], R.credits[i]), R.credits[i] = 0;
}

/* Non-overlapping occurrences of needle (n bytes) in [p, e), up to max: memchr() for the
 * needle's byte at index r, which is rare in this traffic (the V of PRIVMSG, the N of PING),
 * then memcmp(). Several times faster than memmem() here; the same count. */
static long occurrences(const char *p, const char *e, const char *needle, size_t n, size_t r,
                        long max) {
    long k = 0;
    const char *last = e - (n - 1 - r);  /* the rare byte of a match lies in [p + r, last) */
    for (p += r; k < max && p < last && (p = memchr(p, needle[r], (size_t)(last - p))); p++)
        if (!memcmp(p - r, needle, n)) k++, p += n - 1;
    return k;
}

/* Bytes received as IRC lines (data has HEAD bytes of room in front, for the tail). */
static void lines_received(Conn *c, char *data, size_t got) {
    data -= c->tail_len;
    memcpy(data, c->tail, c->tail_len);
    size_t len = (size_t)c->tail_len + got;
    const char *nl = memrchr(data, '\n', len);
    size_t end = nl ? (size_t)(nl - data) + 1 : 0;
    c->tail_len = len - end <= HEAD ? (int)(len - end) : 0;  /* drop an overlong line */
    memcpy(c->tail, data + end, c->tail_len);
    if (!end) return;
    long k = occurrences(data, data + end, PRIVMSG, 9, 4, LONG_MAX);
    c->received += k;
    if (c->parse || occurrences(data, data + end, "PING", 4, 2, 1))
        parse_lines(c, data, data + end);
    if (c->credit_partner && k) send_msgs(c->credit_partner, k);
}

static void on_ready(Conn *c);
#define WS_FRAME_MAX (64 * 1024)
static char wsbuf[HEAD + RBUF + WS_FRAME_MAX + 16];

/* WebSocket: the rest of the upgrade response, then frames; each text or binary message
 * becomes one line (payload + "\n") for lines_received(). */
static void ws_received(Conn *c, const char *p, size_t n) {
    if (!c->ready) {
        buf_add(&c->hs, p, n);
        const char *end = memmem(c->hs.p, c->hs.len, "\r\n\r\n", 4);
        if (!end) {
            if (c->hs.len > 8192) conn_close(c, "WebSocket: no end of the HTTP response");
            return;
        }
        if (c->hs.len < 13 || memcmp(c->hs.p, "HTTP/1.1 101 ", 13)) {
            const char *eol = memchr(c->hs.p, '\r', c->hs.len);
            snprintf(c->last_error, sizeof c->last_error, "WebSocket upgrade refused: %.*s",
                     (int)(eol - c->hs.p), c->hs.p);
            conn_close(c, c->last_error);
            return;
        }
        size_t head = (size_t)(end + 4 - c->hs.p);
        c->hs.len -= head;
        memmove(c->hs.p, c->hs.p + head, c->hs.len);
        on_ready(c);
        p = NULL, n = 0;  /* what followed the response is in hs */
    }
    const unsigned char *q;
    size_t avail;
    if (c->hs.len) {
        if (n) buf_add(&c->hs, p, n);
        q = (const unsigned char *)c->hs.p, avail = c->hs.len;
    } else {
        q = (const unsigned char *)p, avail = n;
    }
    char *out = wsbuf + HEAD, *o = out;
    while (avail >= 2 && !c->closed) {
        unsigned op = q[0] & 0x0f;
        bool fin = q[0] & 0x80, masked = q[1] & 0x80;
        size_t len = q[1] & 0x7f, hl = 2;
        if (len == 126) {
            if (avail < 4) break;
            len = (size_t)q[2] << 8 | q[3], hl = 4;
        } else if (len == 127) {
            if (avail < 10) break;
            len = 0, hl = 10;
            for (int i = 0; i < 8; i++) len = len << 8 | q[2 + i];
        }
        if (len > WS_FRAME_MAX) {
            conn_close(c, "WebSocket: frame over 64 KiB");
            return;
        }
        hl += masked ? 4 : 0;
        if (avail < hl + len) break;
        const unsigned char *pl = q + hl;
        if (op <= 2) {  /* continuation, text, binary */
            if ((size_t)(o - out) + len + 1 > RBUF + WS_FRAME_MAX) {  /* flush what we have */
                lines_received(c, out, (size_t)(o - out));
                o = out;
            }
            for (size_t i = 0; i < len; i++) o[i] = (char)(masked ? pl[i] ^ q[hl - 4 + (i & 3)] : pl[i]);
            o += len;
            if (fin) *o++ = '\n';
        } else if (op == 8) {
            snprintf(c->last_error, sizeof c->last_error, "WebSocket close %u %.*s",
                     len >= 2 ? pl[0] << 8 | pl[1] : 1005, len > 2 ? (int)(len - 2) : 0,
                     (const char *)pl + 2);
            conn_close(c, c->last_error);
            return;
        } else if (op == 9) {  /* ping: pong with the same payload */
            wsout.len = 0;
            ws_frame(c, 10, (const char *)pl, len);
            raw_write(c, wsout.p, wsout.len);
        }
        q += hl + len, avail -= hl + len;
    }
    if (c->closed) return;
    /* keep a partial frame for the next read */
    if (c->hs.len) {
        memmove(c->hs.p, q, avail);
        c->hs.len = avail;
    } else if (avail) {
        buf_add(&c->hs, (const char *)q, avail);
    }
    if (o > out) lines_received(c, out, (size_t)(o - out));
}

static void on_readable(Conn *c) {
    char *data = rbuf + HEAD;
    for (;;) {
        /* TLS: several records per round (SSL_read returns one at most). */
        size_t got = 0;
        ssize_t k;
        int err = 0;  /* errno of the last read (what follows may write, and change errno) */
        do {
            k = raw_recv(c, data + got, RBUF - got);
            if (k > 0) got += (size_t)k;
            else err = errno;
        } while (k > 0 && c->ssl && RBUF - got >= 16384 + 512);
        if (got) {
            R.rbytes += (long long)got;
            if (c->quickack) setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &(int){1}, sizeof(int));
            if (R.ws) ws_received(c, data, got);
            else lines_received(c, data, got);
        }
        if (c->closed) return;
        if (k <= 0) {
            if (k < 0 && err == EAGAIN) return;
            conn_close(c, k ? strerror(err) : "closed by server");
            return;
        }
        /* level-triggered: epoll reports what is left in the socket, but not what read-ahead
         * left inside OpenSSL */
        if (!tls_pending(c)) return;
    }
}

/* The transport carries IRC lines: register. */
static void on_ready(Conn *c) {
    c->ready = true;
    char reg[640];
    int n = R.caps && R.caps[0]
                ? snprintf(reg, sizeof reg,
                           "CAP LS 302\r\nCAP REQ :%s\r\nNICK %s\r\nUSER %s 0 * :%s\r\n"
                           "CAP END\r\n", R.caps, c->nick, c->nick, c->nick)
                : snprintf(reg, sizeof reg, "NICK %s\r\nUSER %s 0 * :%s\r\n", c->nick,
                           c->nick, c->nick);
    conn_write(c, reg, (size_t)n);
}

/* Bytes can flow (TCP connected, TLS handshake done): ask for the WebSocket upgrade, or
 * register. */
static void on_wire(Conn *c) {
    c->wire = true;
    if (!R.ws) {
        on_ready(c);
        return;
    }
    for (int i = 0; i < 4; i++) c->mask[i] = (unsigned char)rand();
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s%s%s%s%s%s\r\n",
                     R.ws_path, R.port, R.ws_protocol[0] ? "Sec-WebSocket-Protocol: " : "",
                     R.ws_protocol, R.ws_protocol[0] ? "\r\n" : "",
                     R.ws_origin[0] ? "Origin: " : "", R.ws_origin,
                     R.ws_origin[0] ? "\r\n" : "");
    raw_write(c, req, (size_t)n);
}

#ifndef LOADGEN_NO_TLS
static void tls_handshake(Conn *c) {
    int k = SSL_do_handshake(c->ssl);
    if (k == 1) {
        set_events(c, EPOLLIN);
        on_wire(c);
        return;
    }
    int e = SSL_get_error(c->ssl, k);
    if (e == SSL_ERROR_WANT_READ) {
        set_events(c, EPOLLIN);
    } else if (e == SSL_ERROR_WANT_WRITE) {
        set_events(c, EPOLLIN | EPOLLOUT);
    } else {
        tls_result(c, k);
        conn_close(c, c->last_error[0] ? c->last_error : "TLS handshake failed");
    }
}
#endif

static void on_event(Conn *c, unsigned ev) {
    if (c->closed) return;
    if (!c->connected) {
        int err = 0;
        socklen_t sl = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl);
        if (err) {
            if (!R.setup_error[0])
                snprintf(R.setup_error, sizeof R.setup_error,
                         "OSError: connect from %s to 127.0.0.1:%d: %s",
                         source_text((int)(c - R.conns)), R.port, strerror(err));
            close(c->fd);
            c->closed = true;
            return;
        }
        c->connected = true;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
        set_events(c, EPOLLIN);
#ifndef LOADGEN_NO_TLS
        if (R.tls) {
            if (!(c->ssl = SSL_new(R.ssl_ctx)) || !SSL_set_fd(c->ssl, c->fd)) die("SSL_new failed");
            SSL_set_connect_state(c->ssl);
            tls_handshake(c);
            return;
        }
#endif
        on_wire(c);
        return;
    }
#ifndef LOADGEN_NO_TLS
    if (!c->wire) {
        tls_handshake(c);
        return;
    }
#endif
    if (ev & EPOLLOUT) flush(c);
    if (!c->closed && ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
}

/* -- the loop ----------------------------------------------------------------------------- */

/* A client's socket could not be set up: end the run (the first reason is reported). */
static void start_failed(Conn *c, int i, const char *call) {
    if (!R.setup_error[0])
        snprintf(R.setup_error, sizeof R.setup_error, "OSError: %s (client %d, from %s): %s",
                 call, i, source_text(i), strerror(errno));
    if (c->fd >= 0) close(c->fd);
    c->closed = true;
}

static void conn_start(Conn *c, char letter, int i) {
    snprintf(c->nick, sizeof c->nick, "%c%d", letter, i);
    c->sid = -1;
    c->quickack = R.quickack;
    c->parse = true;
    c->t_start = now();
    R.nstarted++;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        start_failed(c, i, "socket");
        return;
    }
    if (R.nsources > 0) {
        /* Bind the source address only; the port is chosen at connect() time, for the whole
         * 4-tuple, so each source address has the full ephemeral port range to itself. */
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &(int){1}, sizeof(int));
        struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr.s_addr = source_addr(i)};
        if (bind(c->fd, (struct sockaddr *)&src, sizeof src) < 0) {
            start_failed(c, i, "bind");
            return;
        }
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)R.port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        start_failed(c, i, "connect");
        return;
    }
    struct epoll_event e = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(R.ep, EPOLL_CTL_ADD, c->fd, &e) < 0) die("epoll_ctl: %s", strerror(errno));
}

/* Run the event loop until done() or the deadline; false on timeout or a setup error. */
static bool poll_until(bool (*done)(void), double deadline) {
    struct epoll_event ev[256];
    while (!R.setup_error[0] && !(done && done())) {
        double left = deadline - now();
        if (left <= 0) return done == NULL;
        int n = epoll_wait(R.ep, ev, 256, (int)(left * 1000) + 1);
        if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) on_event(ev[i].data.ptr, ev[i].events);
    }
    return !R.setup_error[0];
}

static int concurrency;
static char nick_letter;
/* poll_until() condition for registration; also starts connections while fewer than
 * `concurrency` registrations are pending (connecting or waiting for 001). */
static bool all_registered(void) {
    while (R.nstarted < R.nconns && R.nstarted - R.nregistered < concurrency &&
           !R.setup_error[0])
        conn_start(&R.conns[R.nstarted], nick_letter, R.nstarted);
    return R.nregistered == R.nconns;
}

static Conn *joining;
static bool joined(void) { return joining->joined; }

static void setup_timeout(double timeout, const char *what) {
    if (!R.setup_error[0])
        snprintf(R.setup_error, sizeof R.setup_error,
                 "SetupError: timed out after %.0fs waiting for %s", timeout, what);
}

static bool connect_and_register(char letter, int n, double timeout, const char *what) {
    R.conns = calloc((size_t)n, sizeof(Conn));
    if (!R.conns) die("out of memory");
    R.nconns = n;
    nick_letter = letter;
    if (!poll_until(all_registered, now() + timeout)) return setup_timeout(timeout, what), false;
    return true;
}

static void add_sender(Conn *c, const char *target, bool keep_times) {
    c->sid = R.nsenders++;
    /* --label: every message labeled (labeled-response); the replies are ACKs */
    c->prefix_len = snprintf(c->prefix, sizeof c->prefix, "%sPRIVMSG %s :",
                             R.label ? "@label=l " : "", target);
    R.senders = realloc(R.senders, R.nsenders * sizeof *R.senders);
    R.sent = realloc(R.sent, R.nsenders * sizeof *R.sent);
    R.credits = realloc(R.credits, R.nsenders * sizeof *R.credits);
    if (!R.senders || !R.sent || !R.credits) die("out of memory");
    R.senders[c->sid] = c;
    R.sent[c->sid] = (Times){.keep = keep_times};
    R.credits[c->sid] = 0;
}

/* -- measurements ------------------------------------------------------------------------- */

static const char *const CPU_KINDS[8] = {"user", "nice", "system", "idle",
                                         "iowait", "irq", "softirq", "steal"};

typedef struct {
    double t0, gen, srv, machine[8];
    long long recv;
} Sample;

static long long total_received(void) {
    long long n = 0;
    for (int i = 0; i < R.nstarted; i++) n += R.conns[i].received;
    return n;
}

static double own_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static char *read_proc(const char *fmt, int pid, char *buf, size_t size) {
    char path[64];
    snprintf(path, sizeof path, fmt, pid);
    FILE *f = fopen(path, "r");
    if (!f) die("%s: %s", path, strerror(errno));
    buf[fread(buf, 1, size - 1, f)] = 0;
    fclose(f);
    return buf;
}

static double server_cpu(int pid) {  /* utime + stime of pid (all threads), in seconds */
    char buf[2048];
    const char *p = strrchr(read_proc("/proc/%d/stat", pid, buf, sizeof buf), ')');
    unsigned long long ut, st;  /* fields after the command name: state ... utime stime */
    if (!p || sscanf(p + 2, "%*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu", &ut, &st) != 2)
        die("cannot parse /proc/%d/stat", pid);
    return (double)(ut + st) / clk_tck;
}

static long server_rss_kib(int pid) {
    static char buf[16384];
    const char *p = strstr(read_proc("/proc/%d/status", pid, buf, sizeof buf), "\nVmRSS:");
    if (!p) die("no VmRSS for pid %d", pid);
    return strtol(p + 7, NULL, 10);
}

static Sample sample(int pid) {
    Sample s = {.t0 = now(), .gen = own_cpu(), .srv = server_cpu(pid), .recv = total_received()};
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[8] = {0};
    if (!f || fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                     &v[4], &v[5], &v[6], &v[7]) != 8)
        die("cannot read /proc/stat");
    fclose(f);
    for (int i = 0; i < 8; i++) s.machine[i] = (double)v[i] / clk_tck;
    return s;
}

/* -- JSON out ----------------------------------------------------------------------------- */

static bool jfirst = true;
static void jkey(const char *k) { printf("%s\"%s\": ", jfirst ? "{" : ", ", k), jfirst = false; }
static void jnum(const char *k, double v) { jkey(k), printf("%.10g", v); }
static void jint(const char *k, long long v) { jkey(k), printf("%lld", v); }
static void jms(const char *k, const double *sorted, size_t n, double q) {
    size_t i = (size_t)(q * n);
    if (n) jnum(k, sorted[i < n ? i : n - 1] * 1000);
    else jkey(k), printf("null");
}
static void jstr(const char *k, const char *s) {
    jkey(k), putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch < 0x20) printf("\\u%04x", ch);
        else putchar(ch);
    }
    putchar('"');
}

/* CPU time used by everything but the generator and the server between a and b. */
static double other_cpu(const Sample *a, const Sample *b) {
    double busy = 0;
    for (int i = 0; i < 8; i++)
        if (i != 3 && i != 4 && i != 7) /* user nice system irq softirq */
            busy += b->machine[i] - a->machine[i];
    return busy - (b->gen - a->gen) - (b->srv - a->srv);
}

/* Counters and CPU times over a phase: the keys loadgen.py's Phase.end() reports. */
static void print_phase(const Sample *a, const Sample *b, bool with_received) {
    double wall = b->t0 - a->t0, gen = b->gen - a->gen, srv = b->srv - a->srv;
    jnum("wall_s", wall);
    if (with_received) jint("received", b->recv - a->recv);
    jnum("gen_cpu_s", gen);
    jnum("server_cpu_s", srv);
    jkey("machine_cpu_s");
    for (int i = 0; i < 8; i++)
        printf("%s\"%s\": %.10g", i ? ", " : "{", CPU_KINDS[i], b->machine[i] - a->machine[i]);
    printf("}");
    jnum("other_cpu_s", other_cpu(a, b));
    if (with_received) jnum("rate", (double)(b->recv - a->recv) / wall);
}

/* idle50k's hold phase: the server's CPU while every client is idle (hold_* keys). */
static void print_hold(const Sample *a, const Sample *b, long long bytes) {
    double wall = b->t0 - a->t0, srv = b->srv - a->srv;
    jnum("hold_s", wall);
    jnum("hold_server_cpu_s", srv);
    jnum("hold_server_cpu_pct", wall > 0 ? 100 * srv / wall : 0);
    jnum("hold_gen_cpu_s", b->gen - a->gen);
    jnum("hold_other_cpu_s", other_cpu(a, b));
    jint("hold_bytes_received", bytes);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void measure_traffic(int pid, double warmup, double duration, int window) {
    for (int i = 0; i < R.nconns; i++) {
        Conn *c = &R.conns[i];
        c->parse = c->record_latency || c->credit_by_sender;
        c->quickack = R.quickack && (c->parse || c->credit_partner);
    }
    R.setup = false;
    R.sending = true;
    for (int i = 0; i < R.nsenders; i++) send_msgs(R.senders[i], window);
    poll_until(NULL, now() + warmup);
    Sample a = sample(pid);
    R.measuring = true;
    poll_until(NULL, now() + duration);
    R.measuring = false;
    Sample b = sample(pid);
    R.sending = false;
    print_phase(&a, &b, true);
    qsort(R.lat, R.nlat, sizeof(double), cmp_double);
    jint("latency_samples", (long long)R.nlat);
    jms("p50_ms", R.lat, R.nlat, 0.50);
    jms("p99_ms", R.lat, R.nlat, 0.99);
    long long sent = 0;
    for (int s = 0; s < R.nsenders; s++) sent += (long long)R.sent[s].n;
    jint("messages_sent", sent);
    jint("window", window);
}

static void print_run_errors(void) {
    if (!R.nerrors) return;
    char msg[1200];
    int k = snprintf(msg, sizeof msg, "%d error(s) during the run: ", R.nerrors);
    for (int i = 0; i < R.nerrors && i < 3 && k < (int)sizeof msg; i++)
        k += snprintf(msg + k, sizeof msg - k, "%s%s", i ? "; " : "", R.errors[i]);
    jstr("error", msg);
}

/* -- main --------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    double duration = 5, warmup = 1, settle = 0.5, timeout = 60, hold = 10;
    int pid = 0, window = 16, clients = 100, nsend = 10, pairs = 50, idle = 10000;
    concurrency = 100;
    static const struct option opts[] = {
        {"port", 1, 0, 'p'}, {"server-pid", 1, 0, 'P'}, {"duration", 1, 0, 'd'},
        {"warmup", 1, 0, 'w'}, {"window", 1, 0, 'W'}, {"clients", 1, 0, 'c'},
        {"senders", 1, 0, 's'}, {"pairs", 1, 0, 'r'}, {"idle", 1, 0, 'i'},
        {"concurrency", 1, 0, 'C'}, {"settle", 1, 0, 'S'}, {"setup-timeout", 1, 0, 't'},
        {"no-uvloop", 0, 0, 'u'}, {"quickack", 0, 0, 'q'}, {"sources", 1, 0, 'a'},
        {"hold", 1, 0, 'H'}, {"caps", 1, 0, 'A'}, {"label", 0, 0, 'L'},
        {"transport", 1, 0, 'T'}, {"ws-path", 1, 0, 'U'}, {"ws-protocol", 1, 0, 'R'},
        {"ws-origin", 1, 0, 'O'}, {0, 0, 0, 0}};
    const char *transport = "tcp";
    R.ws_path = "/", R.ws_protocol = "text.ircv3.net", R.ws_origin = "";
    for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (o) {
        case 'p': R.port = atoi(optarg); break;
        case 'P': pid = atoi(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 'W': window = atoi(optarg); break;
        case 'c': clients = atoi(optarg); break;
        case 's': nsend = atoi(optarg); break;
        case 'r': pairs = atoi(optarg); break;
        case 'i': idle = atoi(optarg); break;
        case 'C': concurrency = atoi(optarg); break;
        case 'S': settle = atof(optarg); break;
        case 't': timeout = atof(optarg); break;
        case 'u': break;  /* loadgen.py's option; there is no event loop to choose here */
        case 'q': R.quickack = true; break;
        case 'a': R.nsources = atoi(optarg); break;
        case 'H': hold = atof(optarg); break;
        case 'A': R.caps = optarg; break;
        case 'L': R.label = true; break;
        case 'T': transport = optarg; break;
        case 'U': R.ws_path = optarg; break;
        case 'R': R.ws_protocol = optarg; break;
        case 'O': R.ws_origin = optarg; break;
        default: return 2;
        }
    }
    const char *scenario = optind == argc - 1 ? argv[optind] : "";
    bool fanout = !strcmp(scenario, "fanout"), private = !strcmp(scenario, "private");
    bool idle50k = !strcmp(scenario, "idle50k");
    if ((!fanout && !private && !idle50k && strcmp(scenario, "idle")) || !R.port || !pid ||
        concurrency < 1) {
        fprintf(stderr, "usage: %s {fanout,idle,idle50k,private} --port PORT --server-pid PID"
                        " [options] (the options of loadgen.py)\n", argv[0]);
        return 2;
    }
    if (R.nsources < 0 || R.nsources > 250 || hold < 0) {
        fprintf(stderr, "--sources must be between 0 and 250, --hold at least 0\n");
        return 2;
    }
    if (fanout && !(nsend > 0 && nsend < clients)) {
        fprintf(stderr, "--senders must be between 1 and --clients - 1\n");
        return 2;
    }
    R.tls = !strcmp(transport, "tls") || !strcmp(transport, "wss");
    R.ws = !strcmp(transport, "ws") || !strcmp(transport, "wss");
    if (!R.tls && !R.ws && strcmp(transport, "tcp")) {
        fprintf(stderr, "--transport must be tcp, tls, ws or wss\n");
        return 2;
    }
#ifdef LOADGEN_NO_TLS
    if (R.tls) {
        fprintf(stderr, "built without OpenSSL (LOADGEN_NO_TLS): no --transport %s\n", transport);
        return 2;
    }
#else
    if (R.tls) {
        /* No certificate check (the servers here use self-signed pairs), no session reuse:
         * every connection does a full handshake. Read-ahead: fewer recv() calls. */
        SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx) die("SSL_CTX_new failed");
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
        SSL_CTX_set_read_ahead(ctx, 1);
        R.ssl_ctx = ctx;
    }
#endif
    srand((unsigned)getpid());
    clk_tck = sysconf(_SC_CLK_TCK);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if ((R.ep = epoll_create1(EPOLL_CLOEXEC)) < 0) die("epoll_create1: %s", strerror(errno));
    R.setup = true;

    bool ok = true;
    if (fanout) {
        ok = connect_and_register('f', clients, timeout, "registration");
        for (int i = 0; ok && i < clients; i++) {
            joining = &R.conns[i];  /* one at a time: "first joined" means the same everywhere */
            conn_write(joining, "JOIN #bench\r\n", 13);
            char what[64];
            snprintf(what, sizeof what, "JOIN of %s", joining->nick);
            if (!poll_until(joined, now() + timeout)) setup_timeout(timeout, what), ok = false;
        }
        if (ok) {
            int step = clients / nsend, nothers = 0;
            for (int i = 0; i < nsend; i++)
                add_sender(&R.conns[i * step + step - 1], "#bench", true);
            Conn **others = malloc(sizeof *others * clients);
            for (int i = 0; i < clients; i++)
                if (R.conns[i].sid < 0) others[nothers++] = &R.conns[i];
            others[0]->credit_by_sender = true;
            others[0]->record_latency = others[nothers / 2]->record_latency = true;
            others[nothers - 1]->record_latency = true;
            free(others);
            measure_traffic(pid, warmup, duration, window);
            jint("clients", clients), jint("senders", nsend), jint("latency_receivers", 3);
        }
    } else if (private) {
        ok = connect_and_register('p', 2 * pairs, timeout, "registration");
        if (ok) {
            for (int i = 0; i < 2 * pairs; i++) R.conns[i].record_latency = i % 10 == 0;
            for (int i = 0; i < 2 * pairs; i += 2) {
                Conn *a = &R.conns[i], *b = &R.conns[i + 1];
                add_sender(a, b->nick, b->record_latency);
                add_sender(b, a->nick, a->record_latency);
                a->credit_partner = b, b->credit_partner = a;
            }
            measure_traffic(pid, warmup, duration, window);
            jint("pairs", pairs), jint("latency_receivers", (2 * pairs + 9) / 10);
        }
    } else if (idle50k && rl.rlim_cur < (rlim_t)idle + 64) {
        char msg[200];
        snprintf(msg, sizeof msg, "open-file limit (RLIMIT_NOFILE) is %llu, %d clients need %d:"
                 " raise the hard limit (as root: prlimit --pid $$ --nofile=110000:110000)",
                 (unsigned long long)rl.rlim_cur, idle, idle + 64);
        jstr("error", msg);
        ok = false;
    } else {  /* idle, idle50k: connect, register, then (idle50k) hold and measure the server */
        long rss0 = server_rss_kib(pid);
        Sample a = sample(pid);
        char what[64];
        snprintf(what, sizeof what, "%d registrations", idle);
        ok = connect_and_register('i', idle, timeout, what);
        if (ok) {
            Sample b = sample(pid);
            R.setup = false;
            poll_until(NULL, now() + settle);
            long rss1 = server_rss_kib(pid), rss_registered = rss1;
            Sample h0, h1;
            long long hold_bytes = 0;
            if (idle50k) {
                h0 = sample(pid);
                long long bytes0 = R.rbytes;
                poll_until(NULL, now() + hold);  /* PINGs, if any, are answered */
                h1 = sample(pid);
                hold_bytes = R.rbytes - bytes0;
                rss1 = server_rss_kib(pid);
            }
            int alive = 0;
            for (int i = 0; i < R.nconns; i++) alive += !R.conns[i].closed;
            if (alive < idle) {
                char msg[1200];
                int k = snprintf(msg, sizeof msg, "only %d of %d still connected: ", alive, idle);
                for (int i = 0; i < R.nerrors && i < 3 && k < (int)sizeof msg; i++)
                    k += snprintf(msg + k, sizeof msg - k, "%s%s", i ? "; " : "", R.errors[i]);
                jstr("error", msg);
                R.nerrors = 0;  /* reported here */
                ok = false;
            } else {
                print_phase(&a, &b, false);
                jint("clients", idle), jint("concurrency", concurrency);
                jnum("rate", idle / (b.t0 - a.t0));
                jint("rss_before_kib", rss0), jint("rss_after_kib", rss1);
                jnum("kib_per_client", (double)(rss1 - rss0) / idle);
                qsort(R.reglat, R.nreglat, sizeof(double), cmp_double);
                jms("p50_ms", R.reglat, R.nreglat, 0.50);  /* connect() to 001 */
                jms("p99_ms", R.reglat, R.nreglat, 0.99);
                if (idle50k) {
                    jint("sources", R.nsources);
                    jstr("first_source", source_text(0));
                    jint("rss_registered_kib", rss_registered);
                    print_hold(&h0, &h1, hold_bytes);
                }
            }
        }
    }
    if (!ok && R.setup_error[0]) {
        int connected = 0, registered = 0;
        for (int i = 0; i < R.nstarted; i++)
            connected += R.conns[i].connected, registered += R.conns[i].registered;
        jstr("error", R.setup_error), jint("connected", connected), jint("registered", registered);
    }
    print_run_errors();
    jstr("transport", transport);
#ifndef LOADGEN_NO_TLS
    for (int i = 0; R.tls && i < R.nstarted; i++)
        if (R.conns[i].ssl && R.conns[i].wire) {
            char tls[200];
            snprintf(tls, sizeof tls, "%s %s", SSL_get_version(R.conns[i].ssl),
                     SSL_get_cipher_name(R.conns[i].ssl));
            jstr("tls", tls);
            break;
        }
#endif
    R.closing = true;
    for (int i = 0; i < R.nstarted; i++) conn_close(&R.conns[i], "");
    jstr("scenario", scenario), jstr("loop", "epoll (C)"), jint("nofile", (long long)rl.rlim_cur);
    printf("}\n");
    return ok && !R.nerrors ? 0 : 1;
}
