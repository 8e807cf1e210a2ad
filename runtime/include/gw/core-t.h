/* Shared vocabulary of the runtime: status codes and string views. */
#ifndef GW_CORE_T_H
#define GW_CORE_T_H

#include <stddef.h>
#include <stdint.h>

/* nginx's numbers, reused as FFI return codes. */
#define GW_OK 0
#define GW_ERROR -1
#define GW_AGAIN -2
#define GW_DONE -4
#define GW_DECLINED -5

/* A view into memory owned by someone else (request buffer, config). */
struct gw_str {
    const char *p;
    size_t n;
};

#define GW_STR(lit) ((struct gw_str){(lit), sizeof(lit) - 1})

#endif
