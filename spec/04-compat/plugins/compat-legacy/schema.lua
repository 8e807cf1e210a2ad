-- luacheck: no max line length
return {
  no_consumer = true,
  fields = {
    { config = { type = "record", fields = {
      { value = { type = "string", default = "legacy" } },
    } } },
  },
}
