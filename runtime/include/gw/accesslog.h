#ifndef GW_ACCESSLOG_H
#define GW_ACCESSLOG_H

#include "gw/conn-t.h"

/* Opens the access log of this process: a path, "stdout" or "off". */
int gw_access_log_open(const char *spec);

/* Appends one JSON line for the request to the worker's buffer; the buffer
 * is written once per loop iteration (gw_access_log_flush). Never logs
 * header values, query strings or bodies, so no credential reaches it. */
void gw_access_log(struct gw_conn *c, struct gw_req *r);

void gw_access_log_flush(void);

#endif
