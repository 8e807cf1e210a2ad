#ifndef GW_WORKER_T_H
#define GW_WORKER_T_H

#include <ev.h>
#include <stdint.h>

#include "gw/buf-t.h"
#include "gw/list.h"
#include "gw/settings-t.h"

struct lua_State;
struct gw_config;
struct gw_stats_slot;

struct gw_worker {
    int id;
    struct ev_loop *loop;
    struct lua_State *L;
    struct gw_config *config; /* current generation, one reference held */
    int lfd[GW_MAX_LISTEN];   /* this worker's listening sockets */
    ev_io lio[GW_MAX_LISTEN];
    int ctl_fd;               /* read end of the master's pipe */
    ev_io ctl;
    struct gw_buf ctl_in;
    ev_signal sigterm, sigint, sigquit;
    ev_timer drain;
    ev_prepare flush;         /* writes buffered access log lines */
    int stopping;
    struct gw_list conns;     /* every client connection */
    int nconns;
    struct gw_list free_reqs;
    struct gw_stats_slot *stats;
    uint64_t rng[2];
    int access_fd;            /* -1: off */
    struct gw_buf access_buf;
};

extern struct gw_worker *gw_worker;

#endif
