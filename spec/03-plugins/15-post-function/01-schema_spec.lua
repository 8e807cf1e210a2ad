-- post-function: config validation (the schema is pre-function's; the
-- cases are shared: 14-pre-function/schema_cases.lua).
local helpers = require "spec.helpers"

-- busted's spec environment (describe, it...) for the shared cases
local cases = assert(loadfile(helpers.root .. "/spec/03-plugins/" ..
                              "14-pre-function/schema_cases.lua"))
setfenv(cases, getfenv(1))
cases()("post-function")
