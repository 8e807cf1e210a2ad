-- luacheck: no max line length
return {
  name = "compat-print",
  fields = {
    { config = { type = "record", fields = {
      { mode = { type = "string", default = "print",
                 one_of = { "print", "redirect", "exit" } } },
    } } },
  },
}
