/* Client connections, their current request, and upstream connections. */
#ifndef GW_CONN_T_H
#define GW_CONN_T_H

#include <ev.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <stdint.h>

#include "gw/buf-t.h"
#include "gw/list.h"
#include "gw/pool.h"
#include "gw/router-t.h"

#define GW_MAX_HEADERS 128
#define GW_REQUEST_ID_LEN 32

struct gw_listen;
struct gw_config;
struct gw_route;
struct gw_service;
struct gw_upstream;
struct gw_lctx;
struct gw_compress;
struct ssl_st;
struct gw_h2;
struct gw_h2_stream;

/* A header as offsets into the buffer that holds the head. */
struct gw_hdr {
    uint32_t name, name_len;
    uint32_t value, value_len;
};

/* A header as views, once a plugin has changed a header list (the strings
 * live in the request pool or in the buffer the head came in). */
struct gw_hview {
    const char *name, *value;
    uint32_t nlen, vlen;
};

struct gw_hlist {
    struct gw_hview *v;
    int n, cap;
    /* bit (name length % 64) set for every name pushed (never cleared when
     * entries go: a stale bit only costs a scan): a name whose bit is clear
     * is not in the list, and setting it scans nothing */
    uint64_t lens;
};

/* A parsed head: offsets into the buffer it was read into. */
struct gw_head {
    int nhdr;
    int parsing_value; /* callbacks: 1 while a value is being received */
    int complete;      /* the head ended: later header callbacks are trailers, ignored */
    struct gw_hdr hdr[GW_MAX_HEADERS];
};

/* What the llhttp callbacks of gw_http_settings_init record into: the
 * parser's data points here. base is refreshed before each llhttp_execute. */
struct gw_head_ctx {
    struct gw_head *head;
    const char *base;          /* start of the buffer the head is parsed in */
    /* one parser sees requests (a target) or responses (a reason phrase),
     * never both: they share their places (smaller idle connections) */
    union {
        uint32_t *status_off; /* responses: reason phrase, may be NULL */
        uint32_t *url_off;    /* requests: target, may be NULL */
    };
    union {
        uint32_t *status_len;
        uint32_t *url_len;
    };
    int (*on_headers_complete)(llhttp_t *p);
    int (*on_message_complete)(llhttp_t *p);
    int (*on_body)(llhttp_t *p, const char *at, size_t len); /* NULL: bodies pass raw */
    const char *trailer_value_end; /* end of the trailer value's last piece */
    struct gw_buf *trailers;       /* when set: trailer lines recorded ("name: value\r\n") */
    int bad_trailer;               /* a trailer had a shape refused in heads */
    int trailer_named;             /* the current trailer line had a name */
};

enum gw_conn_state {
    GW_C_HANDSHAKE, /* TLS listener: before and during the handshake */
    GW_C_IDLE,    /* keepalive, no request bytes yet */
    GW_C_HEAD,    /* reading a request head */
    GW_C_PROXY,   /* a request is being served */
    GW_C_TUNNEL,  /* after 101: raw bytes both ways */
    GW_C_CLOSING, /* flushing a last response, then close */
    GW_C_H2,      /* HTTP/2: bytes go to the session (h2.c), requests to bridged conns */
};

struct gw_req {
    struct gw_list link; /* free list */
    struct gw_conn *conn;     /* the connection it came on */
    struct gw_config *config; /* held reference */
    const struct gw_route *route;
    struct gw_service *service;
    struct gw_router_match match;
    struct gw_head head;
    uint32_t head_len;        /* bytes of the head at the start of conn->in */
    uint32_t method_off, method_len;
    uint32_t url_off, url_len;
    uint32_t path_len;        /* raw path part of the url (before '?') */
    int host_hdr;             /* index of Host in head, -1 */
    int upgrade;              /* client asked for a protocol upgrade */
    int has_body;
    int body_done;            /* the whole request body was read from the client */
    uint64_t body_bytes;      /* raw body bytes read so far */
    int expect_continue;
    int is_head;
    int http_minor;
    int keepalive;            /* client wants the connection kept */
    int status;               /* status sent to the client */
    int resp_started;         /* response bytes went to the client */
    int resp_done;            /* the whole response is in conn->out */
    int tries;
    int upstream_status;
    int has_grpc_status;      /* grpc_status is set: the upstream's, or a gateway error's */
    int grpc_status;
    int target;               /* balancer target of the current try, -1 */
    uint32_t tried;           /* bit i: target i was tried */
    int target_counted;       /* the target's connection count includes us */
    int target_probe;         /* the try is a readmission probe */
    int8_t try_target[8];     /* targets of the first tries, for the log */
    int16_t try_status[8];    /* their outcome: HTTP status, or 0 failed */
    char *consumer_id;        /* set by kong.client.authenticate (pool) */
    char *consumer_name;      /* its username, with --metrics-consumers on (pool) */
    struct gw_str xfwd[6];    /* overrides of X-Forwarded-For/Proto/Host/Port/Path/Prefix */
    uint64_t bytes_in, bytes_out;
    ev_tstamp t_start, t_upstream_start, t_upstream_first, t_end;
    char id[GW_REQUEST_ID_LEN + 1];
    char *npath;              /* normalized path (scratch memory below) */
    size_t npath_len;
    struct gw_upstream *up;
    struct gw_buf scratch;
    struct gw_list dns_link; /* waiting for name resolution */

    /* ---- plugins (Lua) ---- */
    struct gw_pool pool;      /* request memory, released at the end */
    struct gw_lctx *lctx;     /* the coroutine running this request's phases */
    uint32_t phases;          /* enum gw_phase: the phases this request runs */
    int phase;                /* the phase running now (0: none) */
    int lua_failed;           /* a phase failed: the request was answered 500 */
    int lua_started;          /* the coroutine has this request's state */
    struct gw_hlist *up_hdrs; /* upstream request headers, once changed */
    struct gw_str up_path;    /* overrides; p == NULL: none */
    struct gw_str up_query;
    struct gw_str up_method;
    int has_up_query;
    int host_changed;         /* a plugin set the Host header */
    struct gw_str up_body;    /* a body set by a plugin */
    int has_up_body;
    int body_mode;            /* GW_BODY_STREAM, GW_BODY_READING, GW_BODY_READ, GW_BODY_DISCARD */
    struct gw_buf body_buf;   /* the request body read whole for plugins */
    int body_too_large;       /* reading it whole went past the limit */
    int up_connect_timeout, up_write_timeout, up_read_timeout; /* ms, 0: the service's */
    char *up_target_host;     /* kong.service.set_target */
    int up_target_port;
    int has_exit;             /* a plugin produced the response */
    int exit_status;
    struct gw_str exit_body;
    int resp_source;          /* GW_SRC_SERVICE, GW_SRC_EXIT, GW_SRC_ERROR */
    int resp_status;          /* the status the client gets (0: upstream's) */
    struct gw_hlist *resp_hdrs;    /* client response headers, when plugins see them */
    struct gw_hlist *up_resp_hdrs; /* the upstream's response headers, copied */
    int resp_decode;          /* body goes through body_filter or is buffered */
    int resp_chunked_out;     /* the client gets chunked encoding we make */
    struct gw_buf trailers;   /* ... and the upstream's trailers, for its last chunk */
    struct gw_buf resp_body;  /* buffered upstream body (response phase) */
    const char *chunk;        /* body_filter: the current chunk */
    size_t chunk_len;
    int chunk_eof;
    struct gw_buf chunk_out;  /* body_filter: what the chunk became */
    struct gw_compress *zc;   /* response compression, once chosen */
    struct gw_buf zout;       /* compressed output of the current chunk */
    char pool_first[2048];    /* the pool's first block */
};

#define GW_BODY_STREAM 0
#define GW_BODY_READING 1
#define GW_BODY_READ 2
#define GW_BODY_DISCARD 3

#define GW_SRC_SERVICE 0
#define GW_SRC_EXIT 1
#define GW_SRC_ERROR 2

struct gw_conn {
    ev_io io;
    ev_timer timer;
    int fd;
    int events;          /* what io watches now */
    enum gw_conn_state state;
    /* flags, packed: an idle connection's size is what 10,000 of them cost */
    unsigned closing : 1;        /* close after the current response */
    unsigned tls_want_write : 1; /* TLS: the last read waits for writability */
    unsigned tls_started : 1;    /* TLS: the first bytes were a handshake record */
    unsigned plain_on_tls : 1;   /* plain HTTP came to a TLS listener: answered 400 */
    unsigned http2 : 1;          /* serves an HTTP/2 stream through a bridge */
    const struct gw_listen *listen;
    struct gw_list link; /* worker's connection list */
    llhttp_t parser;
    struct gw_head_ctx hctx;
    struct gw_buf in;    /* request heads and body bytes from the client */
    struct gw_buf out;   /* bytes for the client */
    struct gw_req *req;
    uint32_t parsed;     /* bytes of in fed to the parser (in is bounded far below 4 GB) */
    uint32_t nrequests;
    ev_tstamp head_deadline;
    char peer_ip[INET6_ADDRSTRLEN];
    uint16_t peer_port;
    struct ssl_st *ssl;  /* TLS listeners: the session, NULL on plain ones */
    struct gw_h2 *h2;          /* GW_C_H2: the HTTP/2 session (h2.c) */
    struct gw_bridge *bridge;  /* an HTTP/2 stream's bridge: what it keeps of its parent */
};

/* What the connection that serves an HTTP/2 stream (a bridge without a
 * socket, h2.c) keeps of the HTTP/2 connection it came from; allocated for
 * those only, so that every other connection stays small. */
struct gw_bridge {
    struct gw_h2_stream *stream;     /* NULL once the stream ended */
    struct ssl_st *tls;              /* the parent's TLS session, a reference held
                                      * (SSL_up_ref), so it outlives the parent; NULL: plain */
    char local_ip[INET6_ADDRSTRLEN]; /* the address the client connected to; "": unknown */
};

/* Where TLS facts (scheme, SNI, client certificate) come from: the
 * connection's own session, or its HTTP/2 parent's; NULL: plain HTTP. */
static inline struct ssl_st *gw_conn_tls(const struct gw_conn *c)
{
    return c->ssl ? c->ssl : c->bridge ? c->bridge->tls : NULL;
}

enum gw_up_state {
    GW_U_CONNECTING,
    GW_U_ACTIVE,  /* serving a request */
    GW_U_IDLE,    /* in the keepalive pool */
};

struct gw_upstream {
    ev_io io;
    ev_timer timer;
    int fd;
    int events;
    enum gw_up_state state;
    struct gw_conn *client;
    struct gw_list link; /* pool list */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint32_t key;         /* hash of addr */
    int reused;           /* came from the pool */
    int requests;         /* requests served on this connection */
    int head_done;        /* response head parsed */
    int msg_done;         /* whole response read */
    int informational;    /* current message is a 1xx */
    int reusable;         /* may go back to the pool after this response */
    uint64_t resp_bytes;
    uint32_t status_off, status_len; /* reason phrase */
    uint32_t head_len;
    size_t parsed;        /* bytes of in fed to the parser */
    llhttp_t parser;
    struct gw_head_ctx hctx;
    struct gw_head head;
    struct gw_buf in;
    struct gw_buf out;
    /* ---- TLS (services with protocol https); ssl NULL: plain ---- */
    struct ssl_st *ssl;
    uint64_t tls_id;      /* gw_tls_client_id of its context, 0 for plain */
    char *tls_name;       /* the SNI / verified name it was made for, or NULL */
    int tls_handshake;    /* state GW_U_CONNECTING: the TCP part is done */
    int tls_want;         /* EV_READ/EV_WRITE OpenSSL waits for (0: none) */
    struct gw_h2up *h2;   /* HTTP/2 (grpc and grpcs services), NULL: HTTP/1.1 */
};

#endif
