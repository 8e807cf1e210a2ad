/* TLS as a client (see gw/tls_client.h).
 *
 * Verification happens inside the handshake (SSL_VERIFY_PEER with the host
 * name or IP in the verify parameters), so a refused certificate fails the
 * handshake and SSL_get_verify_result names the reason for the log.
 *
 * Sessions: each context keeps the last few sessions its servers gave, by
 * "verification flag + name", and offers them to new connections to the
 * same name, so that a new upstream connection usually resumes instead of
 * doing a full handshake. The key includes the verification flag because a
 * resumed session is not verified again. */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw/core-t.h"
#include "gw/tls_client.h"

#define SESS_SLOTS 16

struct sess_slot {
    char *key;            /* "v|name" or "n|name" */
    SSL_SESSION *sess;
};

struct gw_tls_client {
    SSL_CTX *ctx;
    int refs;
    int verify;
    uint64_t id;
    struct sess_slot sess[SESS_SLOTS];
    int sess_next;        /* the slot the next new key replaces */
};

/* A session handed to Lua: TLS 1.3 servers send their tickets after the
 * handshake, so the resumable session arrives later than the handshake's
 * answer; the box follows the connection's newest session. */
struct gw_tls_client_sess {
    SSL_SESSION *sess;
    int refs;             /* Lua's reference, and the connection's while it lives */
};

static int ctx_idx = -1;  /* SSL_CTX ex_data: its gw_tls_client, NULL once freed */
static int key_idx = -1;  /* SSL ex_data: the session cache key (malloc'd) */
static int box_idx = -1;  /* SSL ex_data: its gw_tls_client_sess, if Lua asked for one */

static void key_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                     void *argp)
{
    free(ptr);
}

static void box_unref(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                      void *argp)
{
    gw_tls_client_session_release(ptr);
}

static int indexes_init(void)
{
    if (ctx_idx == -1)
        ctx_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    if (key_idx == -1)
        key_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, key_free);
    if (box_idx == -1)
        box_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, box_unref);
    return ctx_idx != -1 && key_idx != -1 && box_idx != -1 ? 0 : -1;
}

struct gw_tls_client_sess *gw_tls_client_session_box(SSL *ssl)
{
    struct gw_tls_client_sess *box = SSL_get_ex_data(ssl, box_idx);
    if (box == NULL) {
        box = calloc(1, sizeof(*box));
        if (box == NULL)
            return NULL;
        box->sess = SSL_get1_session(ssl);
        box->refs = 1; /* the connection's */
        if (SSL_set_ex_data(ssl, box_idx, box) != 1) {
            SSL_SESSION_free(box->sess);
            free(box);
            return NULL;
        }
    }
    box->refs++;
    return box;
}

SSL_SESSION *gw_tls_client_session_get(const struct gw_tls_client_sess *box)
{
    return box ? box->sess : NULL;
}

void gw_tls_client_session_release(struct gw_tls_client_sess *box)
{
    if (box == NULL || --box->refs > 0)
        return;
    if (box->sess)
        SSL_SESSION_free(box->sess);
    free(box);
}

static char errbuf[512];

const char *gw_tls_client_error(void)
{
    size_t n = 0;
    unsigned long e;
    errbuf[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        if (n + 2 < sizeof(errbuf)) {
            if (n)
                errbuf[n++] = ';', errbuf[n++] = ' ';
            ERR_error_string_n(e, errbuf + n, sizeof(errbuf) - n);
            n = strlen(errbuf);
        }
    }
    if (n == 0)
        snprintf(errbuf, sizeof(errbuf), "unknown TLS error");
    return errbuf;
}

/* The new-session callback: keeps the session under the connection's key. */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct gw_tls_client *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_idx);
    const char *key = SSL_get_ex_data(ssl, key_idx);
    struct gw_tls_client_sess *box = SSL_get_ex_data(ssl, box_idx);
    if (box && SSL_SESSION_up_ref(sess) == 1) {
        if (box->sess)
            SSL_SESSION_free(box->sess);
        box->sess = sess;
    }
    if (t == NULL || key == NULL)
        return 0;
    struct sess_slot *slot = NULL;
    for (int i = 0; i < SESS_SLOTS; i++)
        if (t->sess[i].key && strcmp(t->sess[i].key, key) == 0)
            slot = &t->sess[i];
    if (slot == NULL) {
        slot = &t->sess[t->sess_next];
        t->sess_next = (t->sess_next + 1) % SESS_SLOTS;
        char *k = strdup(key);
        if (k == NULL)
            return 0;
        free(slot->key);
        slot->key = k;
    }
    if (slot->sess)
        SSL_SESSION_free(slot->sess);
    slot->sess = sess;
    return 1; /* we keep the reference */
}

uint64_t gw_tls_client_conf_id(const struct gw_tls_client_conf *cc)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    char head[64];
    int k = snprintf(head, sizeof(head), "v%d d%d n%d h%d|", cc->verify, cc->depth, cc->nca,
                     cc->h2);
    if (md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1) {
        EVP_DigestUpdate(md, head, (size_t)k);
        for (int i = 0; i < cc->nca; i++)
            EVP_DigestUpdate(md, cc->ca_pem[i], strlen(cc->ca_pem[i]) + 1);
        if (cc->ca_file)
            EVP_DigestUpdate(md, cc->ca_file, strlen(cc->ca_file) + 1);
        EVP_DigestUpdate(md, "|", 1);
        if (cc->cert_pem)
            EVP_DigestUpdate(md, cc->cert_pem, strlen(cc->cert_pem) + 1);
        if (cc->key_pem)
            EVP_DigestUpdate(md, cc->key_pem, strlen(cc->key_pem) + 1);
        EVP_DigestFinal_ex(md, out, &len);
    }
    EVP_MD_CTX_free(md);
    uint64_t id = 0;
    for (unsigned i = 0; i < 8 && i < len; i++)
        id = (id << 8) | out[i];
    return id ? id : 1;
}

/* Adds the PEM certificates in pem to store; the number added, -1. */
static int add_pem_cas(X509_STORE *store, const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    if (bio == NULL)
        return -1;
    int n = 0;
    X509 *x;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        int ok = X509_STORE_add_cert(store, x);
        X509_free(x);
        if (!ok) {
            /* the same CA twice is not an error */
            unsigned long e = ERR_peek_last_error();
            if (ERR_GET_REASON(e) != X509_R_CERT_ALREADY_IN_HASH_TABLE) {
                BIO_free(bio);
                return -1;
            }
        }
        n++;
    }
    ERR_clear_error(); /* the end of the text reads as "no start line" */
    BIO_free(bio);
    return n;
}

/* Loads a certificate chain and its key from PEM texts into ctx. */
static int use_cert_key(SSL_CTX *ctx, const char *cert_pem, const char *key_pem)
{
    BIO *bio = BIO_new_mem_buf(cert_pem, -1);
    X509 *leaf = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    int ok = leaf && SSL_CTX_use_certificate(ctx, leaf) == 1;
    X509_free(leaf);
    X509 *extra;
    while (ok && (extra = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
        if (SSL_CTX_add_extra_chain_cert(ctx, extra) != 1) { /* takes extra */
            X509_free(extra);
            ok = 0;
        }
    if (ok)
        ERR_clear_error();
    BIO_free(bio);
    if (!ok)
        return -1;
    bio = BIO_new_mem_buf(key_pem, -1);
    EVP_PKEY *pk = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    ok = pk && SSL_CTX_use_PrivateKey(ctx, pk) == 1 && SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(pk);
    BIO_free(bio);
    return ok ? 0 : -1;
}

struct gw_tls_client *gw_tls_client_new(const struct gw_tls_client_conf *cc, char *err,
                                        size_t errlen)
{
    struct gw_tls_client *t = NULL;
    SSL_CTX *ctx = NULL;
    ERR_clear_error();
    if (indexes_init() != 0)
        goto fail_ssl;
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        goto fail_ssl;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* a body delimited by the connection's end may end without close_notify */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(ctx, cc->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_verify_depth(ctx, cc->depth);
    if (cc->nca > 0) {
        X509_STORE *store = SSL_CTX_get_cert_store(ctx);
        for (int i = 0; i < cc->nca; i++) {
            int n = add_pem_cas(store, cc->ca_pem[i]);
            if (n <= 0) {
                snprintf(err, errlen, "could not load CA certificate #%d: %s", i + 1,
                         n == 0 ? "no certificate in the PEM text" : gw_tls_client_error());
                goto fail;
            }
        }
    } else if (cc->ca_file) {
        if (SSL_CTX_load_verify_locations(ctx, cc->ca_file, NULL) != 1) {
            snprintf(err, errlen, "could not load the CA file %s: %s", cc->ca_file,
                     gw_tls_client_error());
            goto fail;
        }
    } else if (cc->verify && SSL_CTX_set_default_verify_paths(ctx) != 1) {
        snprintf(err, errlen, "could not load the system CA store: %s", gw_tls_client_error());
        goto fail;
    }
    if (cc->cert_pem && cc->key_pem && use_cert_key(ctx, cc->cert_pem, cc->key_pem) != 0) {
        snprintf(err, errlen, "could not load the client certificate: %s", gw_tls_client_error());
        goto fail;
    }
    if (cc->h2 && SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x02h2", 3) != 0)
        goto fail_ssl;
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
    SSL_CTX_set_ex_data(ctx, ctx_idx, t);
    t->ctx = ctx;
    t->refs = 1;
    t->verify = cc->verify;
    t->id = gw_tls_client_conf_id(cc);
    return t;

fail_ssl:
    snprintf(err, errlen, "could not create a TLS context: %s", gw_tls_client_error());
fail:
    SSL_CTX_free(ctx);
    free(t);
    return NULL;
}

void gw_tls_client_retain(struct gw_tls_client *t)
{
    t->refs++;
}

void gw_tls_client_release(struct gw_tls_client **pt)
{
    struct gw_tls_client *t = *pt;
    *pt = NULL;
    if (t == NULL || --t->refs > 0)
        return;
    /* connections still open hold the SSL_CTX: their late session tickets
     * must not reach the freed cache */
    SSL_CTX_set_ex_data(t->ctx, ctx_idx, NULL);
    SSL_CTX_free(t->ctx);
    for (int i = 0; i < SESS_SLOTS; i++) {
        free(t->sess[i].key);
        if (t->sess[i].sess)
            SSL_SESSION_free(t->sess[i].sess);
    }
    free(t);
}

uint64_t gw_tls_client_id(const struct gw_tls_client *t)
{
    return t->id;
}

int gw_tls_client_is_ip(const char *name)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

SSL *gw_tls_client_ssl(struct gw_tls_client *t, int fd, const char *name, int verify,
                       SSL_SESSION *sess, const char **err)
{
    ERR_clear_error();
    SSL *ssl = SSL_new(t->ctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        *err = "could not create a TLS connection";
        SSL_free(ssl);
        return NULL;
    }
    if (verify < 0)
        verify = t->verify;
    else
        SSL_set_verify(ssl, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    int ip = name && name[0] && gw_tls_client_is_ip(name);
    if (name && name[0] && !ip && SSL_set_tlsext_host_name(ssl, name) != 1) {
        *err = "bad server name";
        SSL_free(ssl);
        return NULL;
    }
    if (verify && name && name[0]) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if ((ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, name)
                : X509_VERIFY_PARAM_set1_host(vp, name, 0)) != 1) {
            *err = "bad server name";
            SSL_free(ssl);
            return NULL;
        }
    }
    size_t nl = name ? strlen(name) : 0;
    char *key = malloc(nl + 3);
    if (key == NULL) {
        *err = "no memory";
        SSL_free(ssl);
        return NULL;
    }
    key[0] = verify ? 'v' : 'n';
    key[1] = '|';
    memcpy(key + 2, name ? name : "", nl + 1);
    SSL_set_ex_data(ssl, key_idx, key); /* freed with ssl (key_free) */
    if (sess == NULL)
        for (int i = 0; i < SESS_SLOTS; i++)
            if (t->sess[i].key && strcmp(t->sess[i].key, key) == 0)
                sess = t->sess[i].sess;
    if (sess)
        SSL_set_session(ssl, sess); /* a failed resumption is a full handshake */
    SSL_set_connect_state(ssl);
    return ssl;
}

/* Maps an SSL_* call's failure to want/errno: GW_AGAIN, GW_DONE (closed),
 * GW_ERROR (errno set: EPROTO for TLS errors). */
static int io_status(SSL *ssl, int rc, int *want)
{
    int e = SSL_get_error(ssl, rc);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        *want = EV_READ;
        errno = EAGAIN;
        return GW_AGAIN;
    case SSL_ERROR_WANT_WRITE:
        *want = EV_WRITE;
        errno = EAGAIN;
        return GW_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return GW_DONE;
    case SSL_ERROR_SYSCALL:
        if (errno == 0 || ERR_peek_error() != 0) {
            if (errno == 0 && ERR_peek_error() == 0)
                return GW_DONE; /* EOF */
            errno = EPROTO;
        }
        return GW_ERROR;
    default:
        errno = EPROTO;
        return GW_ERROR;
    }
}

int gw_tls_client_handshake(SSL *ssl, int *want, char *err, size_t errlen, long *verify_failed)
{
    *verify_failed = 0;
    ERR_clear_error();
    errno = 0;
    int rc = SSL_connect(ssl);
    if (rc == 1) {
        *want = 0;
        return GW_OK;
    }
    int st = io_status(ssl, rc, want);
    if (st == GW_AGAIN)
        return GW_AGAIN;
    long vr = SSL_get_verify_result(ssl);
    if (vr != X509_V_OK && SSL_get_verify_mode(ssl) != SSL_VERIFY_NONE) {
        *verify_failed = vr;
        ERR_clear_error();
        snprintf(err, errlen, "certificate verify failed: %s (%ld)",
                 X509_verify_cert_error_string(vr), vr);
    } else if (st == GW_DONE) {
        snprintf(err, errlen, "the server closed the connection during the TLS handshake");
    } else if (errno != EPROTO) {
        snprintf(err, errlen, "TLS handshake failed: %s", strerror(errno));
    } else {
        snprintf(err, errlen, "TLS handshake failed: %s", gw_tls_client_error());
    }
    return GW_ERROR;
}

ssize_t gw_tls_client_read(SSL *ssl, void *buf, size_t n, int *want)
{
    size_t got = 0;
    ERR_clear_error();
    errno = 0;
    int rc = SSL_read_ex(ssl, buf, n, &got);
    if (rc == 1) {
        *want = 0;
        return (ssize_t)got;
    }
    int st = io_status(ssl, 0, want);
    return st == GW_DONE ? 0 : -1;
}

ssize_t gw_tls_client_peek(SSL *ssl, void *buf, size_t n, int *want)
{
    size_t got = 0;
    ERR_clear_error();
    errno = 0;
    if (SSL_peek_ex(ssl, buf, n, &got) == 1) {
        *want = 0;
        return (ssize_t)got;
    }
    return io_status(ssl, 0, want) == GW_DONE ? 0 : -1;
}

ssize_t gw_tls_client_write(SSL *ssl, const void *buf, size_t n, int *want)
{
    size_t put = 0;
    ERR_clear_error();
    errno = 0;
    if (n == 0)
        return 0;
    int rc = SSL_write_ex(ssl, buf, n, &put);
    if (rc == 1) {
        *want = 0;
        return (ssize_t)put;
    }
    int st = io_status(ssl, 0, want);
    if (st == GW_DONE) {
        errno = EPIPE;
        return -1;
    }
    return -1;
}

int gw_tls_client_pending(const SSL *ssl)
{
    return SSL_has_pending(ssl);
}

void gw_tls_client_close(SSL *ssl)
{
    if (ssl == NULL)
        return;
    /* one attempt at close_notify: the socket is non-blocking and closes
     * next, so there is no waiting for the peer's */
    if (SSL_is_init_finished(ssl)) {
        SSL_set_quiet_shutdown(ssl, 0);
        ERR_clear_error();
        SSL_shutdown(ssl);
    }
    ERR_clear_error();
    SSL_free(ssl);
}
