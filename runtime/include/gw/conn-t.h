/* Client connections, their current request, and upstream connections. */
#ifndef GW_CONN_T_H
#define GW_CONN_T_H

#include <ev.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <stdint.h>

#include "gw/buf-t.h"
#include "gw/list.h"
#include "gw/router-t.h"

#define GW_MAX_HEADERS 128
#define GW_REQUEST_ID_LEN 32

struct gw_listen;
struct gw_config;
struct gw_route;
struct gw_service;
struct gw_upstream;

/* A header as offsets into the buffer that holds the head. */
struct gw_hdr {
    uint32_t name, name_len;
    uint32_t value, value_len;
};

/* A parsed head: offsets into the buffer it was read into. */
struct gw_head {
    int nhdr;
    int parsing_value; /* callbacks: 1 while a value is being received */
    struct gw_hdr hdr[GW_MAX_HEADERS];
};

/* What the llhttp callbacks of gw_http_settings_init record into: the
 * parser's data points here. base is refreshed before each llhttp_execute. */
struct gw_head_ctx {
    struct gw_head *head;
    const char *base;          /* start of the buffer the head is parsed in */
    uint32_t *status_off, *status_len; /* responses: reason phrase, may be NULL */
    uint32_t *url_off, *url_len;       /* requests: target, may be NULL */
    int (*on_headers_complete)(llhttp_t *p);
    int (*on_message_complete)(llhttp_t *p);
};

enum gw_conn_state {
    GW_C_IDLE,    /* keepalive, no request bytes yet */
    GW_C_HEAD,    /* reading a request head */
    GW_C_PROXY,   /* a request is being served */
    GW_C_TUNNEL,  /* after 101: raw bytes both ways */
    GW_C_CLOSING, /* flushing a last response, then close */
};

struct gw_req {
    struct gw_list link; /* free list */
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
    uint64_t bytes_in, bytes_out;
    ev_tstamp t_start, t_upstream_start, t_upstream_first, t_end;
    char id[GW_REQUEST_ID_LEN + 1];
    char *npath;              /* normalized path (scratch memory below) */
    size_t npath_len;
    struct gw_upstream *up;
    struct gw_buf scratch;
    struct gw_list dns_link; /* waiting for name resolution */
};

struct gw_conn {
    ev_io io;
    ev_timer timer;
    int fd;
    int events;          /* what io watches now */
    enum gw_conn_state state;
    int closing;         /* close after the current response */
    const struct gw_listen *listen;
    struct gw_list link; /* worker's connection list */
    llhttp_t parser;
    struct gw_head_ctx hctx;
    struct gw_buf in;    /* request heads and body bytes from the client */
    struct gw_buf out;   /* bytes for the client */
    struct gw_req *req;
    size_t parsed;       /* bytes of in fed to the parser */
    uint32_t nrequests;
    ev_tstamp head_deadline;
    char peer_ip[INET6_ADDRSTRLEN];
    uint16_t peer_port;
};

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
};

#endif
