-- pre-function: config validation (the cases are shared with
-- post-function: schema_cases.lua).
local helpers = require "spec.helpers"

-- busted's spec environment (describe, it...) for the shared cases
local cases = assert(loadfile(helpers.root .. "/spec/03-plugins/" ..
                              "14-pre-function/schema_cases.lua"))
setfenv(cases, getfenv(1))
cases()("pre-function")
