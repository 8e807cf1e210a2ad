/* Intrusive doubly linked lists (circular, with a head node). */
#ifndef GW_LIST_H
#define GW_LIST_H

#include <stddef.h>

struct gw_list {
    struct gw_list *next, *prev;
};

#define gw_container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

static inline void gw_list_init(struct gw_list *h)
{
    h->next = h->prev = h;
}

static inline int gw_list_empty(const struct gw_list *h)
{
    return h->next == h;
}

static inline int gw_list_linked(const struct gw_list *n)
{
    return n->next != NULL && n->next != n;
}

static inline void gw_list_insert_head(struct gw_list *h, struct gw_list *n)
{
    n->next = h->next;
    n->prev = h;
    h->next->prev = n;
    h->next = n;
}

static inline void gw_list_insert_tail(struct gw_list *h, struct gw_list *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

/* Unlinks n and leaves it pointing at itself (safe to unlink twice). */
static inline void gw_list_remove(struct gw_list *n)
{
    if (n->next == NULL)
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = n;
}

#endif
