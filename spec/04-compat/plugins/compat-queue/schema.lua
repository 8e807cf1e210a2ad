-- luacheck: no max line length
return {
  name = "compat-queue",
  fields = {
    { config = { type = "record", fields = {
      { fail_first = { type = "boolean", default = true } },
    } } },
  },
}
