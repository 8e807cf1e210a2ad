-- luacheck: no max line length
return {
  name = "compat-http",
  fields = {
    { config = { type = "record", fields = {
      { url = { type = "string", required = true } },
    } } },
  },
}
