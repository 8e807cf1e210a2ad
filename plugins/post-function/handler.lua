-- post-function: runs Lua code from the config after every other plugin.
return require("kong.plugins.pre-function._handler")("post-function", -1000)
