return {
  name = "bench-header",
  fields = {
    { config = { type = "record", fields = {} } },
  },
}
