#ifndef GW_ADMIN_H
#define GW_ADMIN_H

#include "gw/conn-t.h"

/* Answers a request that arrived on an admin listener. */
void gw_admin_handle(struct gw_conn *c);

#endif
