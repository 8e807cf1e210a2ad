std = "luajit"
max_line_length = 80
unused_args = false
redefined = false

globals = {
  "_KONG",
}

read_globals = {
  "ngx",
  "kong",
}

exclude_files = {
  "spec/.tmp/",
}

files["spec/**/*.lua"] = {
  std = "+busted",
  read_globals = { "newproxy" },
}
