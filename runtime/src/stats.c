#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>

#include "gw/log.h"
#include "gw/stats.h"

struct gw_stats *gw_stats;

int gw_stats_init(int nworkers)
{
    void *p = mmap(NULL, sizeof(struct gw_stats), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        gw_log(GW_LOG_EMERG, "mmap() failed for the stats block");
        return -1;
    }
    gw_stats = p;
    memset(gw_stats, 0, sizeof(*gw_stats));
    struct timeval tv;
    gettimeofday(&tv, NULL);
    gw_stats->start_time = tv.tv_sec + tv.tv_usec / 1e6;
    gw_stats->nworkers = nworkers;
    return 0;
}
