-- luacheck: no max line length
return {
  name = "compat-body",
  fields = {
    { config = { type = "record", fields = {
      { suffix = { type = "string", default = "|END" } },
      { status = { type = "integer" } },
    } } },
  },
}
