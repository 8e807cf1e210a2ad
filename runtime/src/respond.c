/* Responses the gateway makes itself: errors (404, 502, ...), the exits
 * plugins ask for (kong.response.exit), and the admin API's answers. When the
 * request runs header_filter or body_filter plugins, they see these
 * responses too, as Kong's do. */
#include <stdio.h>
#include <string.h>

#include "gw/buf.h"
#include "gw/config-t.h"
#include "gw/conn.h"
#include "gw/ffi.h"
#include "gw/grpc.h"
#include "gw/hlist.h"
#include "gw/http.h"
#include "gw/log.h"
#include "gw/lua_req.h"
#include "gw/version.h"

#define SERVER_HDR "Server: luagate/" GW_VERSION "\r\n"

void gw_write_status_line(struct gw_buf *b, int status)
{
    gw_buf_appends(b, "HTTP/1.1 ");
    gw_buf_append_u64(b, (uint64_t)status);
    gw_buf_append(b, " ", 1);
    gw_buf_appends(b, gw_http_reason(status));
    gw_buf_append(b, "\r\n", 2);
}

void gw_write_header_lines(struct gw_buf *b, int status, const struct gw_hview *v, int n,
                           int framed)
{
    for (int i = 0; i < n; i++, v++) {
        if (framed && (GW_NAME_IS(v->name, v->nlen, "content-length") ||
                       GW_NAME_IS(v->name, v->nlen, "transfer-encoding")))
            continue;
        /* a 426 names the protocols to switch to (RFC 9110 15.5.22) */
        if (gw_http_hop_by_hop(v->name, v->nlen) &&
            !(status == 426 && GW_NAME_IS(v->name, v->nlen, "upgrade")))
            continue;
        gw_buf_append_field(b, v->name, v->nlen, v->value, v->vlen);
    }
}

int gw_conn_write_head(struct gw_conn *c, int status, const struct gw_hlist *h, long long clen,
                       int chunked, int close_after)
{
    struct gw_buf *b = &c->out;
    gw_write_status_line(b, status);
    if (h)
        gw_write_header_lines(b, status, h->v, h->n, clen >= 0 || chunked);
    if (clen >= 0) {
        gw_buf_appends(b, "Content-Length: ");
        gw_buf_append_u64(b, (uint64_t)clen);
        gw_buf_append(b, "\r\n", 2);
    } else if (chunked) {
        gw_buf_appends(b, "Transfer-Encoding: chunked\r\n");
    }
    if (close_after)
        gw_buf_appends(b, "Connection: close\r\n");
    else if (status == 426)
        gw_buf_appends(b, "Connection: Upgrade\r\n");
    return gw_buf_append(b, "\r\n", 2);
}

/* Runs header_filter and body_filter (when the request has them) over a
 * complete response in memory, then queues it. */
static void respond_with_plugins(struct gw_conn *c, int status, const char *body, size_t len,
                                 int close_after)
{
    struct gw_req *r = c->req;
    r->status = status;
    r->resp_status = 0;
    if (r->phases & GW_PHASE_HEADER_FILTER) {
        int rc = gw_lua_phase(c, GW_PHASE_HEADER_FILTER);
        if (rc == GW_AGAIN) {
            gw_log(GW_LOG_ERR, "a header_filter handler tried to wait; request %s", r->id);
            gw_lua_release(r);
        }
    }
    if (r->resp_status)
        r->status = r->resp_status;
    if ((r->phases & GW_PHASE_BODY_FILTER) && !r->is_head) {
        r->chunk = body;
        r->chunk_len = len;
        r->chunk_eof = 1;
        int rc = gw_lua_phase(c, GW_PHASE_BODY_FILTER);
        if (rc == GW_AGAIN) {
            gw_log(GW_LOG_ERR, "a body_filter handler tried to wait; request %s", r->id);
            gw_lua_release(r);
        }
        body = r->chunk;
        len = r->chunk_len;
    }
    r->resp_started = 1;
    if (gw_conn_write_head(c, r->status, r->resp_hdrs, (long long)len, 0, close_after) != 0 ||
        (!r->is_head && len && gw_buf_append(&c->out, body, len) != 0)) {
        gw_conn_close(c);
        return;
    }
    if (close_after)
        c->closing = 1;
    gw_conn_response_done(c);
}

/* The gRPC form of a gateway error (gw/grpc.h): grpc-status and
 * grpc-message, no body. GW_ERROR when out of memory. */
static int grpc_headers(struct gw_req *r, int status, const char *msg)
{
    char code[8], enc[512];
    int code_len;
    r->has_grpc_status = 1;
    r->grpc_status = gw_grpc_status_of(status);
    code_len = snprintf(code, sizeof(code), "%d", r->grpc_status);
    size_t n = gw_grpc_message_encode(msg, strlen(msg), enc, sizeof(enc));
    /* copied into the pool: code and enc are this frame's */
    return gw_hlist_apply(&r->pool, r->resp_hdrs, GW_HDR_ADD, "grpc-status", 11, code,
                          (size_t)code_len) != GW_OK ||
                   gw_hlist_apply(&r->pool, r->resp_hdrs, GW_HDR_ADD, "grpc-message", 12, enc,
                                  n) != GW_OK
               ? GW_ERROR
               : GW_OK;
}

/* grpc_msg: not NULL for a gRPC client (the body is then dropped). */
static void respond(struct gw_conn *c, int status, const char *ctype, const char *body,
                    size_t len, int close_after, const char *grpc_msg)
{
    struct gw_req *r = c->req;
    if (r == NULL || r->resp_started) {
        /* a response is already on its way: the connection cannot carry another */
        gw_conn_close(c);
        return;
    }
    gw_proxy_abort(c);
    if (r->has_body && !r->body_done)
        close_after = 1; /* the rest of the body can't be told from the next request */
    if (!r->keepalive)
        close_after = 1; /* said, as on proxied responses (RFC 9112 9.6) */
    if (grpc_msg || (r->phases & (GW_PHASE_HEADER_FILTER | GW_PHASE_BODY_FILTER | GW_PHASE_LOG))) {
        if (r->resp_source == GW_SRC_SERVICE)
            r->resp_source = GW_SRC_ERROR;
        if (r->resp_hdrs)
            r->resp_hdrs->n = 0;
        else if ((r->resp_hdrs = gw_hlist_new(&r->pool, 8)) == NULL) {
            gw_conn_close(c);
            return;
        }
        if (grpc_msg) {
            ctype = "application/grpc";
            body = "";
            len = 0;
        }
        if (gw_hlist_push(&r->pool, r->resp_hdrs, "Content-Type", 12, ctype, strlen(ctype)) ||
            gw_hlist_push(&r->pool, r->resp_hdrs, "Server", 6, "luagate/" GW_VERSION,
                          sizeof("luagate/" GW_VERSION) - 1) ||
            (grpc_msg && grpc_headers(r, status, grpc_msg) != GW_OK)) {
            gw_conn_close(c);
            return;
        }
        respond_with_plugins(c, status, body, len, close_after);
        return;
    }
    r->status = status;
    r->resp_started = 1;
    struct gw_buf *b = &c->out;
    char head[512];
    int n = status == 204 /* no content, no Content-Length (RFC 9110 8.6) */
                ? snprintf(head, sizeof(head), "HTTP/1.1 204 No Content\r\n" SERVER_HDR "%s\r\n",
                           close_after ? "Connection: close\r\n" : "")
                : snprintf(head, sizeof(head),
                           "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                           SERVER_HDR "%s\r\n",
                           status, gw_http_reason(status), ctype, len,
                           close_after ? "Connection: close\r\n" : "");
    if (gw_buf_append(b, head, (size_t)n) != 0 ||
        (!r->is_head && len && gw_buf_append(b, body, len) != 0)) {
        gw_conn_close(c);
        return;
    }
    if (close_after)
        c->closing = 1;
    gw_conn_response_done(c);
}

void gw_conn_respond(struct gw_conn *c, int status, const char *ctype, const char *body,
                     size_t len, int close_after)
{
    respond(c, status, ctype, body, len, close_after, NULL);
}

void gw_conn_error(struct gw_conn *c, int status, const char *msg)
{
    char body[256];
    int n = snprintf(body, sizeof(body), "{\"message\":\"%s\",\"request_id\":\"%s\"}", msg,
                     c->req ? c->req->id : "");
    int close_after = status == 400 || status == 408 || status == 413 || status == 431;
    respond(c, status, "application/json; charset=utf-8", body, (size_t)n, close_after,
            gw_grpc_request(c) ? msg : NULL);
}

void gw_conn_send_exit(struct gw_conn *c)
{
    struct gw_req *r = c->req;
    if (r->resp_started) {
        gw_conn_close(c);
        return;
    }
    gw_proxy_abort(c);
    int close_after = (r->has_body && !r->body_done && r->body_mode != GW_BODY_READ) ||
                      !r->keepalive;
    if (r->resp_hdrs == NULL && (r->resp_hdrs = gw_hlist_new(&r->pool, 8)) == NULL) {
        gw_conn_close(c);
        return;
    }
    if (gw_hlist_get(r->resp_hdrs, "server", 6, 0, &(const char *){NULL}, &(size_t){0}) !=
        GW_OK)
        gw_hlist_push(&r->pool, r->resp_hdrs, "Server", 6, "luagate/" GW_VERSION,
                      sizeof("luagate/" GW_VERSION) - 1);
    r->resp_source = GW_SRC_EXIT;
    const char *gs;
    size_t gn;
    if (gw_hlist_get(r->resp_hdrs, "grpc-status", 11, 0, &gs, &gn) == GW_OK && gn && gn < 4) {
        r->has_grpc_status = 1; /* for the logs and metrics */
        r->grpc_status = 0;
        for (size_t i = 0; i < gn && gs[i] >= '0' && gs[i] <= '9'; i++)
            r->grpc_status = r->grpc_status * 10 + (gs[i] - '0');
    }
    respond_with_plugins(c, r->exit_status, r->exit_body.p ? r->exit_body.p : "",
                         r->exit_body.n, close_after);
}
