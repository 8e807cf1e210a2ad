-- request-transformer's templates (plugins/request-transformer/
-- template.lua) on their own: what compiles, what a placeholder renders
-- for each kind of value, and that nothing is evaluated as code.
local helpers = require "spec.helpers"

local template = dofile(helpers.root ..
                        "/plugins/request-transformer/template.lua")


local function render(s, env)
  local t = assert(template.compile(s))
  return template.render(t, env or {})
end


describe("request-transformer templates", function()
  it("keep text without placeholders as it is", function()
    local t = assert(template.compile("plain $ text $( open"))
    assert.equal("plain $ text $( open", t.static)
    assert.equal("", assert(template.compile("")).static)
  end)

  it("fold constant placeholders at compile time", function()
    local t = assert(template.compile("a-$('$(x)')-$(12)-$(\"q\\\"\")"))
    assert.equal("a-$(x)-12-q\"", t.static)
  end)

  it("record the namespaces a template uses", function()
    local t = assert(template.compile("$(headers.a)$(shared.b or " ..
                                      "request_id)"))
    assert.same({ headers = true, shared = true, request_id = true },
                t.uses)
  end)

  it("render values as penlight does", function()
    local env = {
      headers = { s = "str", list = { "a", "b" }, empty = {} },
      shared = { n = 1.5, t = true, f = false, nested = { k = "deep" },
                 obj = { k = "v" }, fn = print },
      query_params = { flag = true },
      request_id = "rid",
    }
    assert.equal("str", render("$(headers.s)", env))
    assert.equal("a, b", render("$(headers.list)", env))
    assert.equal("", render("$(headers.empty)", env))
    assert.equal("1.5", render("$(shared.n)", env))
    assert.equal("true", render("$(shared.t)", env))
    assert.equal("", render("$(shared.f)", env))
    assert.equal("deep", render("$(shared.nested.k)", env))
    assert.equal("", render("$(shared.obj)", env))
    assert.equal("", render("$(shared.fn)", env))
    assert.equal("", render("$(shared.missing.k)", env))
    assert.equal("", render("$(shared.n.k)", env))
    assert.equal("true", render("$(query_params.flag)", env))
    assert.equal("rid", render("$(request_id)", env))
    assert.equal("[str|rid]", render("[$(headers.s)|$(request_id)]", env))
  end)

  it("give the first truthy value of an or", function()
    local env = { shared = { f = false, s = "s" }, headers = {} }
    assert.equal("s", render("$(shared.f or shared.s)", env))
    assert.equal("d", render("$(headers.x or shared.f or 'd')", env))
    assert.equal("", render("$(headers.x or shared.f)", env))
    assert.equal("s", render("$((headers.x or shared.s) or 'd')", env))
  end)

  it("index with names, strings and numbers", function()
    local env = { uri_captures = { [0] = "/all", [1] = "one",
                                   ["user-id"] = "u" } }
    assert.equal("/all|one|u", render(
      "$(uri_captures[0])|$(uri_captures[1])|$(uri_captures[\"user-id\"])",
      env))
  end)

  it("never run code", function()
    for _, s in ipairs({
      "$(os.exit())", "$(require('ffi'))", "$(headers.x .. 'y')",
      "$(headers.x:upper())", "$(#headers)", "$(_G)", "$(headers.x == 1)",
      "$(function() end)", "$(headers['x'] and 1)", "$(...)",
      "$(headers.x; os.exit())", "$(headers.x(1))", "$(not headers.x)",
      "$(headers[headers.y])", "$(-1)", "$({})",
    }) do
      local t, err = template.compile(s)
      assert.is_nil(t, s)
      assert.is_string(err, s)
    end
  end)
end)
