#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "gw/health.h"
#include "gw/log.h"

struct table {
    uint64_t version;
    int nslots;
    struct gw_health slot[];
};

static struct table *tab;

int gw_health_init(int slots)
{
    size_t size = sizeof(struct table) + (size_t)slots * sizeof(struct gw_health);
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        gw_log(GW_LOG_EMERG, "mmap() failed for the health table");
        return -1;
    }
    tab = p;
    tab->nslots = slots;
    return 0;
}

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* Claims a free slot by writing its first key byte with a CAS on the whole
 * first word: two workers creating the same key see each other's claim. */
struct gw_health *gw_health_slot(const char *key)
{
    if (tab == NULL || strlen(key) >= GW_HEALTH_KEY)
        return NULL;
    uint32_t h = hash(key);
    for (int i = 0; i < tab->nslots; i++) {
        struct gw_health *s = &tab->slot[(h + (uint32_t)i) % (uint32_t)tab->nslots];
        if (s->key[0] == '\0') {
            char expected = '\0';
            if (__atomic_compare_exchange_n(&s->key[0], &expected, '\1', 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE)) {
                memcpy(s->key + 1, key + 1, strlen(key)); /* with the NUL */
                __atomic_store_n(&s->key[0], key[0], __ATOMIC_RELEASE);
                return s;
            }
        }
        /* a slot being claimed: wait for its key */
        while (__atomic_load_n(&s->key[0], __ATOMIC_ACQUIRE) == '\1')
            ;
        if (strcmp(s->key, key) == 0)
            return s;
    }
    return NULL;
}

uint64_t gw_health_version(void)
{
    return tab ? __atomic_load_n(&tab->version, __ATOMIC_ACQUIRE) : 0;
}

int64_t gw_health_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void gw_health_changed(struct gw_health *h, int unhealthy)
{
    __atomic_store_n(&h->unhealthy, unhealthy, __ATOMIC_RELEASE);
    __atomic_store_n(&h->changed_ms, gw_health_now_ms(), __ATOMIC_RELAXED);
    __atomic_add_fetch(&tab->version, 1, __ATOMIC_ACQ_REL);
}
