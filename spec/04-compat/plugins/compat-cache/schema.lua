-- luacheck: no max line length
return { name = "compat-cache", fields = { { config = { type = "record", fields = {} } } } }
