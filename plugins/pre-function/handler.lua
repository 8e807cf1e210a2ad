-- pre-function: runs Lua code from the config before every other plugin.
return require("kong.plugins.pre-function._handler")("pre-function", 1000000)
