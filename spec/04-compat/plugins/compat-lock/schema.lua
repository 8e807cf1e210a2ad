-- luacheck: no max line length
return { name = "compat-lock", fields = { { config = { type = "record", fields = {} } } } }
