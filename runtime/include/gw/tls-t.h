/* Server TLS types: a config's certificates, by SNI. */
#ifndef GW_TLS_T_H
#define GW_TLS_T_H

#include <openssl/ssl.h>

struct gw_tls_name {
    char *name;   /* lowercase; wildcards without their '*' */
    SSL_CTX *ctx; /* not owned: one of gw_tls_certs.ctx */
};

struct gw_tls_certs {
    SSL_CTX **ctx;                /* one per certificates entity, owned */
    int nctx;
    struct gw_tls_name *exact;    /* sorted by name */
    int nexact;
    struct gw_tls_name *leading;  /* "*.example.com": ".example.com" */
    int nleading;
    struct gw_tls_name *trailing; /* "example.*": "example." */
    int ntrailing;
    SSL_CTX *star;                /* sni "*": replaces the default certificate */
    int client_cert;              /* ask clients for a certificate (an mtls-auth plugin exists) */
};

#endif
