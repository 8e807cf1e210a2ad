/* TLS as a client: to upstream services with protocol https (proxy.c) and
 * for cosockets' sslhandshake (cosocket.c). A gw_tls_client is one client
 * SSL_CTX with its parameters (verification on or off, depth, trusted CAs,
 * client certificate), built at config load and shared by the services
 * whose parameters are the same. Every I/O function here is non-blocking:
 * when OpenSSL needs the socket to become readable or writable it says so
 * through *want (EV_READ or EV_WRITE) and the caller's watcher drives the
 * next call. */
#ifndef GW_TLS_CLIENT_H
#define GW_TLS_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct ssl_st;
struct ssl_session_st;
struct gw_tls_client;
struct gw_tls_client_sess;

/* What a client context is made of. PEM texts are NUL-terminated. */
struct gw_tls_client_conf {
    int verify;           /* check the server's certificate and name */
    int depth;            /* verification depth (nginx's proxy_ssl_verify_depth) */
    const char **ca_pem;  /* trusted CAs; none: the system store (when verify) */
    int nca;
    const char *ca_file;  /* a PEM file of trusted CAs instead of ca_pem, or NULL */
    const char *cert_pem; /* client certificate (chain) and key, or NULL */
    const char *key_pem;
    int h2;               /* ALPN offers h2 alone (grpcs services) */
};

/* Builds a context (refcount 1). NULL with a message in err (errlen bytes)
 * when a certificate, key or CA cannot be loaded. */
struct gw_tls_client *gw_tls_client_new(const struct gw_tls_client_conf *cc, char *err,
                                        size_t errlen);

/* Another holder of t; released with gw_tls_client_release. */
void gw_tls_client_retain(struct gw_tls_client *t);

/* Drops one reference and clears *pt; the context goes with the last one.
 * Connections made from it keep the SSL_CTX itself alive (OpenSSL counts). */
void gw_tls_client_release(struct gw_tls_client **pt);

/* A fingerprint of the parameters (never 0): two contexts with the same one
 * make interchangeable connections, which is what the keepalive pools
 * compare. Stable across reloads of the same parameters. */
uint64_t gw_tls_client_id(const struct gw_tls_client *t);

/* The id a context built from cc would have, without building it (to
 * share one context between services with the same parameters). */
uint64_t gw_tls_client_conf_id(const struct gw_tls_client_conf *cc);

/* Whether name is an IPv4 or IPv6 literal (never sent as SNI). */
int gw_tls_client_is_ip(const char *name);

/* A client connection over fd, not yet handshaken. name (may be NULL) is
 * sent as SNI unless it is an IP literal, and is what the certificate is
 * checked against when verify is on. verify: -1 takes the context's, 0 or 1
 * overrides it (cosockets choose per call). sess, when not NULL, is offered
 * for resumption. NULL with *err (static text) on failure. */
struct ssl_st *gw_tls_client_ssl(struct gw_tls_client *t, int fd, const char *name, int verify,
                                 struct ssl_session_st *sess, const char **err);

/* One step of the handshake: GW_OK done; GW_AGAIN with *want; GW_ERROR
 * with a description in err (the verification reason when the certificate
 * was refused: *verify_failed is set then to the X509 verify code). */
int gw_tls_client_handshake(struct ssl_st *ssl, int *want, char *err, size_t errlen,
                     long *verify_failed);

/* read(2)-like: > 0 bytes; 0 the peer closed (close_notify or EOF); -1
 * with errno: EAGAIN (*want says which readiness to wait for), EPROTO (a
 * TLS error, see gw_tls_client_error) or the socket's error. */
ssize_t gw_tls_client_read(struct ssl_st *ssl, void *buf, size_t n, int *want);

/* gw_tls_client_read without taking the bytes (MSG_PEEK); records that carry no
 * data (session tickets, key updates) are processed. */
ssize_t gw_tls_client_peek(struct ssl_st *ssl, void *buf, size_t n, int *want);

/* write(2)-like, partial writes allowed; the same bytes must be offered
 * again after EAGAIN (they may have moved: the buffer can grow). */
ssize_t gw_tls_client_write(struct ssl_st *ssl, const void *buf, size_t n, int *want);

/* Bytes (decrypted or not yet) that OpenSSL holds: the socket will not
 * become readable for them. */
int gw_tls_client_pending(const struct ssl_st *ssl);

/* A reference to ssl's session as it evolves (TLS 1.3 tickets come after
 * the handshake), for a later connection's resumption: NULL when out of
 * memory. Released with gw_tls_client_session_release. */
struct gw_tls_client_sess *gw_tls_client_session_box(struct ssl_st *ssl);

/* The newest session in box (may be NULL: none yet). */
struct ssl_session_st *gw_tls_client_session_get(const struct gw_tls_client_sess *box);

void gw_tls_client_session_release(struct gw_tls_client_sess *box);

/* Sends close_notify without waiting and frees ssl (NULL is a no-op). */
void gw_tls_client_close(struct ssl_st *ssl);

/* The OpenSSL error queue as text (drained), in a static buffer: for logs
 * after EPROTO. */
const char *gw_tls_client_error(void);

#endif
