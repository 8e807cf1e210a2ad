-- luacheck: no max line length
return {
  name = "compat-router",
  fields = {
    { config = { type = "record", fields = {
      { read_timeout = { type = "integer" } },
    } } },
  },
}
