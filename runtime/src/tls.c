/* TLS for client connections.
 *
 * Contexts: every certificates entity of a config gets its own SSL_CTX,
 * built at config load (a bad certificate or a key that does not match is
 * a config error) and freed with the config; a connection whose handshake
 * picked one holds its own reference (OpenSSL counts them), so a reload
 * never pulls a certificate from under a handshake. The SNI callback looks
 * the name up in the worker's current config: exact names, then
 * "*.example.com", then "example.*" (Kong's order), then the "*" SNI, then
 * the default certificate of the listener.
 *
 * Session tickets: the keys are derived from a secret made by the master
 * before fork, for the current hour; the previous hour's keys still
 * decrypt (and the ticket is renewed). Every worker computes the same keys,
 * so a ticket issued by one resumes on any other, and keys rotate without
 * any shared memory or coordination. */
#include <arpa/inet.h>
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw/config-t.h"
#include "gw/conn-t.h"
#include "gw/core-t.h"
#include "gw/ffi.h"
#include "gw/pool.h"
#include "gw/log.h"
#include "gw/settings-t.h"
#include "gw/tls.h"
#include "gw/worker-t.h"

/* TLS 1.2 suites: forward secret AEAD only (TLS 1.3's are all of that kind) */
#define CIPHERS_12                                                                         \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                           \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                           \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

#define TICKET_PERIOD 3600 /* seconds a ticket key encrypts */

static unsigned char ticket_secret[32];
static SSL_CTX *default_ctx;

struct ticket_keys {
    long epoch;
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char mac[32];
};

static struct ticket_keys keys_cache[2];

static void derive(const char *label, long epoch, unsigned char out[32])
{
    char msg[64];
    int n = snprintf(msg, sizeof(msg), "luagate ticket %s %ld", label, epoch);
    unsigned int len = 32;
    HMAC(EVP_sha256(), ticket_secret, sizeof(ticket_secret), (const unsigned char *)msg,
         (size_t)n, out, &len);
}

static const struct ticket_keys *keys_for(long epoch)
{
    struct ticket_keys *k = &keys_cache[epoch & 1];
    if (k->epoch != epoch) {
        unsigned char name[32];
        derive("name", epoch, name);
        memcpy(k->name, name, sizeof(k->name));
        derive("aes", epoch, k->aes);
        derive("mac", epoch, k->mac);
        k->epoch = epoch;
    }
    return k;
}

static int ticket_cb(SSL *s, unsigned char key_name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    static char sha256[] = "SHA256";
    long now = (long)(time(NULL) / TICKET_PERIOD);
    for (int back = 0; back < 2; back++) {
        const struct ticket_keys *k = keys_for(now - back);
        if (!enc && memcmp(key_name, k->name, 16) != 0)
            continue;
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->mac, sizeof(k->mac)),
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, sha256, 0),
            OSSL_PARAM_construct_end(),
        };
        if (enc) {
            if (RAND_bytes(iv, 16) != 1)
                return -1;
            memcpy(key_name, k->name, 16);
            if (EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1)
                return -1;
        } else if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1) {
            return -1;
        }
        if (EVP_MAC_CTX_set_params(hctx, params) != 1)
            return -1;
        return back ? 2 : 1; /* 2: decrypted with last hour's key, issue a new ticket */
    }
    return 0; /* unknown key: a full handshake */
}

/* ---- SNI ---- */

static int name_cmp(const void *a, const void *b)
{
    return strcmp(((const struct gw_tls_name *)a)->name, ((const struct gw_tls_name *)b)->name);
}

static SSL_CTX *find(const struct gw_tls_name *v, int n, const char *name)
{
    if (n == 0)
        return NULL; /* bsearch's array must not be NULL either */
    struct gw_tls_name key = {.name = (char *)name};
    const struct gw_tls_name *f = bsearch(&key, v, (size_t)n, sizeof(*v), name_cmp);
    return f ? f->ctx : NULL;
}

static SSL_CTX *lookup(const struct gw_tls_certs *t, const char *sni)
{
    char name[256];
    size_t n = strlen(sni);
    if (n == 0 || n >= sizeof(name))
        return NULL;
    for (size_t i = 0; i <= n; i++)
        name[i] = (char)(sni[i] >= 'A' && sni[i] <= 'Z' ? sni[i] + 32 : sni[i]);
    if (n > 1 && name[n - 1] == '.') /* a trailing dot names the same host */
        name[--n] = '\0';
    SSL_CTX *ctx = find(t->exact, t->nexact, name);
    if (ctx == NULL && t->nleading) {
        const char *dot = strchr(name, '.');
        if (dot)
            ctx = find(t->leading, t->nleading, dot);
    }
    if (ctx == NULL && t->ntrailing) {
        char *dot = strrchr(name, '.');
        if (dot) {
            dot[1] = '\0';
            ctx = find(t->trailing, t->ntrailing, name);
        }
    }
    return ctx;
}

static int sni_cb(SSL *s, int *al, void *arg)
{
    const struct gw_config *cf = gw_worker ? gw_worker->config : NULL;
    const struct gw_tls_certs *t = cf ? cf->tls : NULL;
    if (t == NULL)
        return SSL_TLSEXT_ERR_OK;
    const char *name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
    SSL_CTX *ctx = name ? lookup(t, name) : NULL;
    if (ctx == NULL)
        ctx = t->star;
    if (ctx)
        SSL_set_SSL_CTX(s, ctx);
    return SSL_TLSEXT_ERR_OK;
}

/* h2 when the connection's listener has the http2 flag and the client
 * offers it (the client's order does not matter: h2 is preferred), else
 * http/1.1; a client that offers nothing we speak gets no ALPN at all and
 * falls back to HTTP/1.1 (RFC 7301 allows it). The listener is the SSL's
 * app data, set by gw_tls_accept. */
static int alpn_cb(SSL *s, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char h11[] = "http/1.1";
    const struct gw_listen *ls = SSL_get_app_data(s);
    int h11_at = -1;
    for (unsigned int i = 0; i < inlen; i += 1u + in[i]) {
        if (i + 1u + in[i] > inlen)
            break;
        if (ls && ls->http2 && in[i] == 2 && memcmp(in + i + 1, "h2", 2) == 0) {
            *out = in + i + 1;
            *outlen = 2;
            return SSL_TLSEXT_ERR_OK;
        }
        if (in[i] == 8 && h11_at < 0 && memcmp(in + i + 1, h11, 8) == 0)
            h11_at = (int)i;
    }
    if (h11_at < 0)
        return SSL_TLSEXT_ERR_NOACK;
    *out = in + h11_at + 1;
    *outlen = 8;
    return SSL_TLSEXT_ERR_OK;
}

/* Client certificates are asked for, never required by the handshake: the
 * mtls-auth plugin verifies them against its own CAs and answers 401, so a
 * client gets an HTTP answer rather than a handshake alert. */
static int accept_any_cert(int ok, X509_STORE_CTX *x)
{
    return 1;
}

static void tls_error(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    snprintf(err, errlen, "%s%s%s", what, reason ? ": " : "", reason ? reason : "");
    ERR_clear_error();
}

static SSL_CTX *ctx_new(char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        tls_error(err, errlen, "could not make a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_CTX_set_cipher_list(ctx, CIPHERS_12) != 1 ||
        SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384") != 1) {
        tls_error(err, errlen, "could not set the cipher suites");
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* tickets only: no per-worker session cache to fill and miss */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_timeout(ctx, TICKET_PERIOD);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"luagate", 7);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
    SSL_CTX_set_tlsext_servername_callback(ctx, sni_cb);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
    return ctx;
}

/* Adds a certificate chain (leaf first) and its key from PEM text. */
static int use_pem(SSL_CTX *ctx, const char *cert, size_t clen, const char *key, size_t klen,
                   const char *which, char *err, size_t errlen)
{
    char what[96];
    BIO *b = BIO_new_mem_buf(cert, (int)clen);
    X509 *leaf = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    if (leaf == NULL || SSL_CTX_use_certificate(ctx, leaf) != 1) {
        snprintf(what, sizeof(what), "invalid %s", which);
        tls_error(err, errlen, what);
        X509_free(leaf);
        BIO_free(b);
        return -1;
    }
    X509 *ca;
    while ((ca = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
            X509_free(ca);
            BIO_free(b);
            X509_free(leaf);
            snprintf(what, sizeof(what), "invalid chain in %s", which);
            tls_error(err, errlen, what);
            return -1;
        }
    }
    ERR_clear_error(); /* the end of the PEM text */
    BIO_free(b);
    b = BIO_new_mem_buf(key, (int)klen);
    EVP_PKEY *pk = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    int rc = -1;
    if (pk == NULL) {
        snprintf(what, sizeof(what), "invalid key for %s", which);
        tls_error(err, errlen, what);
    } else if (X509_check_private_key(leaf, pk) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "the key does not match %s", which);
    } else if (SSL_CTX_use_PrivateKey(ctx, pk) != 1) {
        snprintf(what, sizeof(what), "invalid key for %s", which);
        tls_error(err, errlen, what);
    } else {
        rc = 0;
    }
    EVP_PKEY_free(pk);
    X509_free(leaf);
    return rc;
}

/* A self-signed certificate for "localhost", as Kong makes when no
 * certificate is given: TLS listeners work out of the box, and clients that
 * verify (rightly) refuse it. */
static int self_signed(SSL_CTX *ctx, char *err, size_t errlen)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *nm = x ? X509_get_subject_name(x) : NULL;
    X509_EXTENSION *san = NULL;
    int ok = pk && x && nm && X509_set_version(x, 2) == 1 &&
             ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL)) == 1 &&
             X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
             X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 86400) &&
             X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC,
                                        (const unsigned char *)"localhost", -1, -1, 0) == 1 &&
             X509_set_issuer_name(x, nm) == 1 && X509_set_pubkey(x, pk) == 1;
    if (ok) {
        san = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, "DNS:localhost");
        ok = san && X509_add_ext(x, san, -1) == 1 && X509_sign(x, pk, EVP_sha256()) > 0 &&
             SSL_CTX_use_certificate(ctx, x) == 1 && SSL_CTX_use_PrivateKey(ctx, pk) == 1;
    }
    if (!ok)
        tls_error(err, errlen, "could not make a self-signed certificate");
    X509_EXTENSION_free(san);
    X509_free(x);
    EVP_PKEY_free(pk);
    return ok ? 0 : -1;
}

int gw_tls_init(char *err, size_t errlen)
{
    int any = 0;
    for (int i = 0; i < gw_settings.nlisten; i++)
        any |= gw_settings.listen[i].ssl;
    if (!any)
        return 0;
    if (RAND_bytes(ticket_secret, sizeof(ticket_secret)) != 1) {
        tls_error(err, errlen, "could not make the session ticket secret");
        return -1;
    }
    default_ctx = ctx_new(err, errlen);
    if (default_ctx == NULL)
        return -1;
    if (gw_settings.ssl_cert == NULL) {
        gw_log(GW_LOG_WARN, "no --ssl-cert given: TLS listeners use a self-signed certificate "
                            "for localhost");
        return self_signed(default_ctx, err, errlen);
    }
    if (SSL_CTX_use_certificate_chain_file(default_ctx, gw_settings.ssl_cert) != 1) {
        char what[512];
        snprintf(what, sizeof(what), "--ssl-cert %s: could not load the certificate",
                 gw_settings.ssl_cert);
        tls_error(err, errlen, what);
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(default_ctx, gw_settings.ssl_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(default_ctx) != 1) {
        char what[512];
        snprintf(what, sizeof(what), "--ssl-key %s: could not load the key, or it does not "
                                     "match the certificate", gw_settings.ssl_key);
        tls_error(err, errlen, what);
        return -1;
    }
    return 0;
}

/* ---- the config's certificates ---- */

static const char *str_field(lua_State *L, int idx, const char *k, size_t *len)
{
    lua_getfield(L, idx, k);
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, len) : NULL;
    lua_pop(L, 1); /* the string stays alive in the table */
    return s;
}

static int add_name(struct gw_tls_name **v, int *n, const char *name, size_t len, SSL_CTX *ctx)
{
    struct gw_tls_name *nv = realloc(*v, (size_t)(*n + 1) * sizeof(**v));
    if (nv == NULL)
        return -1;
    *v = nv;
    char *s = malloc(len + 1);
    if (s == NULL)
        return -1;
    for (size_t i = 0; i < len; i++)
        s[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    s[len] = '\0';
    nv[*n].name = s;
    nv[*n].ctx = ctx;
    (*n)++;
    return 0;
}

/* an SNI into its table: "*" the catch-all, "*.x" leading, "x.*" trailing */
static int add_sni(struct gw_tls_certs *t, const char *sni, size_t len, SSL_CTX *ctx)
{
    if (len == 1 && sni[0] == '*') {
        t->star = ctx;
        return 0;
    }
    if (len > 2 && sni[0] == '*' && sni[1] == '.')
        return add_name(&t->leading, &t->nleading, sni + 1, len - 1, ctx);
    if (len > 2 && sni[len - 1] == '*' && sni[len - 2] == '.')
        return add_name(&t->trailing, &t->ntrailing, sni, len - 1, ctx);
    return add_name(&t->exact, &t->nexact, sni, len, ctx);
}

static int has_mtls_plugin(lua_State *L, int conf)
{
    int found = 0;
    lua_getfield(L, conf, "plugins");
    int n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    for (int i = 1; i <= n && !found; i++) {
        lua_rawgeti(L, -1, i);
        size_t len;
        const char *name = str_field(L, lua_gettop(L), "name", &len);
        lua_getfield(L, -1, "enabled");
        int off = lua_isboolean(L, -1) && !lua_toboolean(L, -1);
        lua_pop(L, 2);
        found = !off && name && strcmp(name, "mtls-auth") == 0;
    }
    lua_pop(L, 1);
    return found;
}

int gw_tls_config_build(lua_State *L, int conf, struct gw_config *cf, char *err, size_t errlen)
{
    struct gw_tls_certs *t = calloc(1, sizeof(*t));
    if (t == NULL)
        goto oom;
    cf->tls = t;
    t->client_cert = has_mtls_plugin(L, conf);
    lua_getfield(L, conf, "certificates");
    int list = lua_gettop(L);
    int n = lua_istable(L, list) ? (int)lua_objlen(L, list) : 0;
    t->ctx = calloc(n ? (size_t)n : 1, sizeof(SSL_CTX *));
    if (t->ctx == NULL)
        goto oom_pop;
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, list, i + 1);
        int e = lua_gettop(L);
        size_t clen = 0, klen = 0, alen = 0, aklen = 0, idlen = 0;
        const char *cert = str_field(L, e, "cert", &clen);
        const char *key = str_field(L, e, "key", &klen);
        const char *alt = str_field(L, e, "cert_alt", &alen);
        const char *altkey = str_field(L, e, "key_alt", &aklen);
        const char *id = str_field(L, e, "id", &idlen);
        char why[256];
        SSL_CTX *ctx = ctx_new(why, sizeof(why));
        if (ctx == NULL)
            goto bad;
        t->ctx[t->nctx++] = ctx;
        if (cert == NULL || key == NULL ||
            use_pem(ctx, cert, clen, key, klen, "cert", why, sizeof(why)) != 0)
            goto bad;
        if (alt && altkey && use_pem(ctx, alt, alen, altkey, aklen, "cert_alt", why,
                                     sizeof(why)) != 0)
            goto bad;
        lua_getfield(L, e, "snis");
        int sn = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
        for (int j = 1; j <= sn; j++) {
            lua_rawgeti(L, -1, j);
            size_t len;
            const char *sni = lua_tolstring(L, -1, &len);
            int rc = sni ? add_sni(t, sni, len, ctx) : 0;
            lua_pop(L, 1);
            if (rc != 0) {
                lua_pop(L, 2);
                goto oom_pop;
            }
        }
        lua_pop(L, 2);
        continue;
    bad:
        snprintf(err, errlen, "certificates[%d]%s%s%s: %s", i + 1, id ? " (id " : "",
                 id ? id : "", id ? ")" : "", why);
        lua_pop(L, 2);
        return -1;
    }
    lua_pop(L, 1);
    /* qsort's array must not be NULL, even for no element */
    if (t->nexact)
        qsort(t->exact, (size_t)t->nexact, sizeof(*t->exact), name_cmp);
    if (t->nleading)
        qsort(t->leading, (size_t)t->nleading, sizeof(*t->leading), name_cmp);
    if (t->ntrailing)
        qsort(t->trailing, (size_t)t->ntrailing, sizeof(*t->trailing), name_cmp);
    return 0;
oom_pop:
    lua_pop(L, 1);
oom:
    snprintf(err, errlen, "out of memory building the certificates");
    return -1;
}

static void names_free(struct gw_tls_name *v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i].name);
    free(v);
}

void gw_tls_config_free(struct gw_config *cf)
{
    struct gw_tls_certs *t = cf->tls;
    if (t == NULL)
        return;
    for (int i = 0; i < t->nctx; i++)
        SSL_CTX_free(t->ctx[i]);
    free(t->ctx);
    names_free(t->exact, t->nexact);
    names_free(t->leading, t->nleading);
    names_free(t->trailing, t->ntrailing);
    free(t);
    cf->tls = NULL;
}

/* ---- connections ---- */

SSL *gw_tls_accept(int fd, const struct gw_listen *ls)
{
    if (default_ctx == NULL)
        return NULL;
    SSL *ssl = SSL_new(default_ctx);
    if (ssl == NULL) {
        ERR_clear_error();
        return NULL;
    }
    SSL_set_fd(ssl, fd);
    SSL_set_app_data(ssl, (void *)ls); /* alpn_cb reads the listener's flags */
    SSL_set_accept_state(ssl);
    const struct gw_config *cf = gw_worker ? gw_worker->config : NULL;
    if (cf && cf->tls && cf->tls->client_cert)
        SSL_set_verify(ssl, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE, accept_any_cert);
    return ssl;
}

int gw_tls_handshake(struct gw_conn *c, int *want_write)
{
    ERR_clear_error();
    int rc = SSL_do_handshake(c->ssl);
    if (rc == 1)
        return 1;
    switch (SSL_get_error(c->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        *want_write = 0;
        return 0;
    case SSL_ERROR_WANT_WRITE:
        *want_write = 1;
        return 0;
    case SSL_ERROR_SYSCALL:
        GW_LOG(GW_LOG_INFO, "TLS handshake with %s failed: %s", c->peer_ip,
               errno ? strerror(errno) : "connection closed");
        return -1;
    default: {
        unsigned long e = ERR_peek_last_error();
        GW_LOG(GW_LOG_INFO, "TLS handshake with %s failed: %s", c->peer_ip,
               e ? ERR_reason_error_string(e) : "protocol error");
        ERR_clear_error();
        return -1;
    }
    }
}

static ssize_t io_result(SSL *ssl, int k, int *want_write)
{
    switch (SSL_get_error(ssl, k)) {
    case SSL_ERROR_WANT_READ:
        *want_write = 0;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        *want_write = 1;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (errno == 0)
            errno = ECONNRESET;
        ERR_clear_error();
        return -1;
    default:
        ERR_clear_error();
        errno = EPROTO;
        return -1;
    }
}

ssize_t gw_tls_read(SSL *ssl, void *buf, size_t n, int *want_write)
{
    ERR_clear_error();
    errno = 0;
    int k = SSL_read(ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
    return k > 0 ? k : io_result(ssl, k, want_write);
}

ssize_t gw_tls_write(SSL *ssl, const void *buf, size_t n, int *want_write)
{
    ERR_clear_error();
    errno = 0;
    int k = SSL_write(ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
    return k > 0 ? k : io_result(ssl, k, want_write);
}

void gw_tls_close(SSL *ssl)
{
    if (ssl == NULL)
        return;
    if (SSL_is_init_finished(ssl))
        SSL_shutdown(ssl); /* one try: close_notify if the socket takes it */
    ERR_clear_error();
    SSL_free(ssl);
}

/* ---- what plugins can ask (kong.client.tls, ngx.var.ssl_*) ---- */

static SSL *ssl_of(struct gw_req *r)
{
    return r->conn ? gw_conn_tls(r->conn) : NULL;
}

int gw_ffi_req_tls(struct gw_req *r)
{
    return ssl_of(r) != NULL;
}

int gw_ffi_tls_var(struct gw_req *r, int which, const char **p, size_t *n)
{
    SSL *ssl = ssl_of(r);
    if (ssl == NULL)
        return GW_DECLINED;
    const char *v = NULL;
    switch (which) {
    case 1: v = SSL_get_version(ssl); break;
    case 2: v = SSL_get_cipher_name(ssl); break;
    case 3: v = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name); break;
    case 4: v = SSL_session_reused(ssl) ? "r" : "."; break;
    default: break;
    }
    if (v == NULL)
        return GW_DECLINED;
    *p = v;
    *n = strlen(v);
    return GW_OK;
}

/* The client's certificate and the chain it sent, as PEM, in request
 * memory. GW_DECLINED: plain connection or no certificate. */
int gw_ffi_tls_client_chain(struct gw_req *r, const char **p, size_t *n)
{
    SSL *ssl = ssl_of(r);
    X509 *leaf = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
    if (leaf == NULL)
        return GW_DECLINED;
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL || PEM_write_bio_X509(b, leaf) != 1)
        goto fail;
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl); /* server side: without the leaf */
    for (int i = 0; chain && i < sk_X509_num(chain); i++)
        if (PEM_write_bio_X509(b, sk_X509_value(chain, i)) != 1)
            goto fail;
    char *data;
    long len = BIO_get_mem_data(b, &data);
    char *copy = gw_pool_strdup(&r->pool, data, (size_t)len);
    if (copy == NULL)
        goto fail;
    BIO_free(b);
    *p = copy;
    *n = (size_t)len;
    return GW_OK;
fail:
    BIO_free(b);
    ERR_clear_error();
    return GW_ERROR;
}

static void add_line(BIO *b, const char *k, const char *v, size_t n)
{
    BIO_printf(b, "%s=", k);
    for (size_t i = 0; i < n; i++) /* one line per field: no newline inside */
        BIO_write(b, v[i] == '\n' || v[i] == '\r' ? " " : v + i, 1);
    BIO_write(b, "\n", 1);
}

static void add_dn(BIO *b, const char *k, X509_NAME *nm)
{
    BIO *t = BIO_new(BIO_s_mem());
    if (t == NULL)
        return;
    X509_NAME_print_ex(t, nm, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    char *d;
    long len = BIO_get_mem_data(t, &d);
    add_line(b, k, d, (size_t)len);
    BIO_free(t);
}

/* The client certificate's fields as "key=value" lines (the Lua side makes
 * a table): subject_dn, issuer_dn, cn (each CN), san_dns, san_email, san_uri,
 * san_ip (each), serial (hex), fingerprint (SHA-256, lowercase hex),
 * not_before, not_after (epoch seconds). */
int gw_ffi_tls_client_info(struct gw_req *r, const char **p, size_t *n)
{
    SSL *ssl = ssl_of(r);
    X509 *x = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
    if (x == NULL)
        return GW_DECLINED;
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL)
        return GW_ERROR;
    add_dn(b, "subject_dn", X509_get_subject_name(x));
    add_dn(b, "issuer_dn", X509_get_issuer_name(x));
    X509_NAME *subj = X509_get_subject_name(x);
    for (int i = -1; (i = X509_NAME_get_index_by_NID(subj, NID_commonName, i)) >= 0;) {
        unsigned char *u = NULL;
        int len = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i)));
        if (len >= 0)
            add_line(b, "cn", (const char *)u, (size_t)len);
        OPENSSL_free(u);
    }
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        const ASN1_STRING *s = NULL;
        const char *k = NULL;
        if (g->type == GEN_DNS) {
            s = g->d.dNSName;
            k = "san_dns";
        } else if (g->type == GEN_EMAIL) {
            s = g->d.rfc822Name;
            k = "san_email";
        } else if (g->type == GEN_URI) {
            s = g->d.uniformResourceIdentifier;
            k = "san_uri";
        }
        if (s) {
            add_line(b, k, (const char *)ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s));
        } else if (g->type == GEN_IPADD) {
            char ip[INET6_ADDRSTRLEN] = "";
            int len = ASN1_STRING_length(g->d.iPAddress);
            const unsigned char *a = ASN1_STRING_get0_data(g->d.iPAddress);
            if (len == 4 || len == 16)
                inet_ntop(len == 4 ? AF_INET : AF_INET6, a, ip, sizeof(ip));
            add_line(b, "san_ip", ip, strlen(ip));
        }
    }
    GENERAL_NAMES_free(sans);
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    if (hex)
        add_line(b, "serial", hex, strlen(hex));
    OPENSSL_free(hex);
    BN_free(bn);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (X509_digest(x, EVP_sha256(), md, &mdlen) == 1) {
        char fp[2 * EVP_MAX_MD_SIZE + 1];
        for (unsigned int i = 0; i < mdlen; i++)
            snprintf(fp + 2 * i, 3, "%02x", md[i]);
        add_line(b, "fingerprint", fp, 2 * mdlen);
    }
    const ASN1_TIME *times[2] = {X509_get0_notBefore(x), X509_get0_notAfter(x)};
    static const char *const tnames[2] = {"not_before", "not_after"};
    for (int i = 0; i < 2; i++) {
        struct tm tm;
        if (ASN1_TIME_to_tm(times[i], &tm) == 1) {
            char t[32];
            int len = snprintf(t, sizeof(t), "%lld", (long long)timegm(&tm));
            add_line(b, tnames[i], t, (size_t)len);
        }
    }
    char *data;
    long len = BIO_get_mem_data(b, &data);
    char *copy = gw_pool_strdup(&r->pool, data, (size_t)len);
    BIO_free(b);
    ERR_clear_error();
    if (copy == NULL)
        return GW_ERROR;
    *p = copy;
    *n = (size_t)len;
    return GW_OK;
}

/* A trust store from PEM text holding CA certificates and optionally CRLs
 * (mtls-auth builds one per plugin instance, at config load). NULL with
 * *err set when nothing usable is in it. */
void *gw_ffi_tls_store_new(const char *pem, size_t n, const char **err)
{
    X509_STORE *st = X509_STORE_new();
    BIO *b = BIO_new_mem_buf(pem, (int)n);
    STACK_OF(X509_INFO) *infos = b ? PEM_X509_INFO_read_bio(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    int certs = 0;
    for (int i = 0; infos && st && i < sk_X509_INFO_num(infos); i++) {
        X509_INFO *in = sk_X509_INFO_value(infos, i);
        if (in->x509 && X509_STORE_add_cert(st, in->x509) == 1)
            certs++;
        if (in->crl)
            X509_STORE_add_crl(st, in->crl);
    }
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    ERR_clear_error();
    if (st == NULL || certs == 0) {
        X509_STORE_free(st);
        *err = "no CA certificate in the PEM text";
        return NULL;
    }
    return st;
}

void gw_ffi_tls_store_free(void *st)
{
    X509_STORE_free(st);
}

/* Verifies the client's certificate (with the intermediates it sent)
 * against store. flags: 1 check CRLs of the leaf, 2 of the whole chain,
 * 4 accept a partial chain (an intermediate in the store is a trust anchor).
 * Returns GW_OK, GW_DECLINED when the client sent no certificate, or
 * GW_ERROR with the reason in *err (OpenSSL's text, static). */
int gw_ffi_tls_verify_client(struct gw_req *r, void *store, int depth, int flags,
                             const char **err)
{
    SSL *ssl = ssl_of(r);
    X509 *leaf = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
    if (leaf == NULL)
        return GW_DECLINED;
    X509_STORE_CTX *x = X509_STORE_CTX_new();
    if (x == NULL || X509_STORE_CTX_init(x, store, leaf, SSL_get_peer_cert_chain(ssl)) != 1) {
        X509_STORE_CTX_free(x);
        *err = "out of memory";
        return GW_ERROR;
    }
    X509_VERIFY_PARAM *vp = X509_STORE_CTX_get0_param(x);
    X509_VERIFY_PARAM_set_depth(vp, depth);
    X509_VERIFY_PARAM_set_purpose(vp, X509_PURPOSE_SSL_CLIENT);
    unsigned long vf = 0;
    if (flags & 1)
        vf |= X509_V_FLAG_CRL_CHECK;
    if (flags & 2)
        vf |= X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
    if (flags & 4)
        vf |= X509_V_FLAG_PARTIAL_CHAIN;
    X509_VERIFY_PARAM_set_flags(vp, vf);
    int ok = X509_verify_cert(x) == 1;
    if (!ok)
        *err = X509_verify_cert_error_string(X509_STORE_CTX_get_error(x));
    X509_STORE_CTX_free(x);
    ERR_clear_error();
    return ok ? GW_OK : GW_ERROR;
}

int gw_tls_alpn_h2(SSL *ssl)
{
    const unsigned char *p = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(ssl, &p, &n);
    return n == 2 && memcmp(p, "h2", 2) == 0;
}
