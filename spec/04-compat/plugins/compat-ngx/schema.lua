-- luacheck: no max line length
return { name = "compat-ngx", fields = { { config = { type = "record", fields = {} } } } }
