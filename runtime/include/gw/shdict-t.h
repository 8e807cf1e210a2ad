/* Shared dictionary types (ngx.shared.<name>). A dictionary is one anonymous
 * MAP_SHARED zone mapped by the master before fork, so every worker sees it
 * at the same address; all access goes through the zone's robust
 * process-shared mutex. */
#ifndef GW_SHDICT_T_H
#define GW_SHDICT_T_H

#include "gw/core-t.h"

struct gw_shdict; /* opaque: the header at the start of the zone */

/* Value types, numbered as Lua's type tags (LUA_TNIL, ...) so the Lua side
 * can switch on them directly. */
#define GW_SHDICT_TNIL 0
#define GW_SHDICT_TBOOLEAN 1
#define GW_SHDICT_TNUMBER 3
#define GW_SHDICT_TSTRING 4
#define GW_SHDICT_TLIST 5

/* Store operations (gw_ffi_shdict_store's op). The SAFE ones never evict
 * unexpired entries: they fail with "no memory" instead. */
#define GW_SHDICT_SET 0
#define GW_SHDICT_ADD 1
#define GW_SHDICT_REPLACE 2
#define GW_SHDICT_SAFE_SET 3
#define GW_SHDICT_SAFE_ADD 4

#define GW_SHDICT_MIN_SIZE (32 * 1024) /* bytes; smaller sizes are rounded up */
#define GW_SHDICT_KEY_MAX 65535        /* bytes */
#define GW_SHDICT_NAME_MAX 63          /* bytes */

#endif
