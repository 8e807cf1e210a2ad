/* Counters shared by the master and workers through anonymous shared memory
 * mapped before fork. Each worker writes only its own slot, so no locks. */
#ifndef GW_STATS_H
#define GW_STATS_H

#include <stdint.h>
#include <sys/types.h>

#include "gw/settings-t.h"

struct gw_stats_slot {
    pid_t pid;
    uint64_t accepted;  /* client connections accepted */
    uint64_t active;    /* client connections open now */
    uint64_t requests;  /* requests answered */
    uint64_t reloads;   /* configs swapped in */
    uint64_t memo_answers; /* requests answered from answer memos (memo.c) */
    uint64_t guard_skips[2]; /* handlers left out by phase guards: access, log (guard.c) */
    double config_at;   /* epoch seconds its current config was swapped in */
    char config_hash[65];
};

struct gw_stats {
    double start_time; /* epoch seconds the master started */
    int nworkers;
    struct gw_stats_slot w[GW_MAX_WORKERS];
};

extern struct gw_stats *gw_stats;

/* Maps the shared block; called once by the master before forking. */
int gw_stats_init(int nworkers);

#endif
