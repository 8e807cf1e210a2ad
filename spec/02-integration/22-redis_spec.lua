-- luagate.redis (hiredis async) through the real binary, with the io-redis
-- test plugin against a real redis-server.
local helpers = require "spec.helpers"


describe("redis client", function()
  local s = helpers.io_suite("io-redis", "redis")
  local call = s.call

  it("runs commands and converts replies", function()
    local d = call("mode=basic")
    assert.equal("OK", d.set)
    assert.equal("v1", d.get)
    assert.is_true(d.missing_is_null)
    assert.equal(1, d.incr)
    assert.equal(42, d.incrby)
    assert.same({ "a", "b", "c" }, d.list)
    assert.same({ 1, "two", "THREE" }, d.mixed)
    assert.is_nil(d.err_v)
    assert.matches("^WRONGTYPE", d.err)
    assert.matches("^ERR unknown command", d.unknown)
    assert.equal(1, d.conns)
  end)

  it("converts large and nested replies", function()
    local d = call("mode=sizes")
    assert.is_true(d.big_ok)
    assert.equal(200000, d.big_len)
    assert.equal(300, d.list_n)
    assert.equal("1yyy", d.list_first)
    assert.equal("300y", d.list_last)
    assert.is_true(d.list_ok)
    assert.same({ 1, { 2, { 3, "x" } }, "y", {} }, d.nested)
    assert.is_true(d.after)
  end)

  it("goes on after a large reply cut by a timeout", function()
    call("mode=sizes") -- the list
    for _ = 1, 5 do
      local d = call("mode=cut&timeout=1")
      assert.is_true(d.cut_n == 300 or d.cut_err == "timeout",
                     "cut: " .. tostring(d.cut_n) .. " " .. tostring(d.cut_err))
      assert.equal("PONG", d.after)
    end
  end)

  it("pipelines, with per-item errors", function()
    local d = call("mode=pipeline")
    assert.is_nil(d.err)
    assert.equal(5, #d.replies)
    assert.equal(1, d.replies[1])
    assert.equal(1, d.replies[2])
    assert.equal(false, d.replies[3][1])
    assert.matches("^WRONGTYPE", d.replies[3][2])
    assert.equal("1", d.replies[4])
  end)

  it("script(): EVALSHA with the EVAL fallback on NOSCRIPT", function()
    local d = call("mode=script")
    assert.equal(5, d.first)
    assert.equal(10, d.second)
    assert.equal(11, d.evalsha)
    assert.matches("^NOSCRIPT", d.noscript)
  end)

  it("command_argv(): a reused array of strings, errors as command()",
     function()
    local d = call("mode=argv")
    assert.equal(2, d.pushed)
    assert.same({ "a\r\nb", "" }, d.list)
    assert.is_nil(d.err_v)
    assert.matches("^WRONGTYPE", d.err)
    assert.is_true(d.raised)
    assert.matches("bad argument #1 to 'command_argv' %(argv%[2%]: " ..
                   "string expected, got number%)", d.raise_msg)
    assert.matches("bad argument #2 to 'command_argv' %(a count of 1 or " ..
                   "more expected%)", d.empty_msg)
  end)

  it("pipeline_argv(): the first n arrays at once, errors as items",
     function()
    local d = call("mode=pipeline_argv")
    assert.same({ "OK", 2 }, d.replies)
    assert.equal("2", d.after)
    assert.is_false(d.item_false)
    assert.matches("^WRONGTYPE", d.item_err)
    assert.matches("bad argument #2 to 'pipeline_argv' %(a count from 1 " ..
                   "to #cmds expected%)", d.count_msg)
    assert.matches("bad argument #1 to 'pipeline_argv' %(cmds%[1%]%[2%]: " ..
                   "string expected, got number%)", d.arg_msg)
    assert.matches("bad argument #1 to 'pipeline_argv' %(cmds%[1%]: a " ..
                   "non%-empty array expected%)", d.empty_msg)
  end)

  it("selects the db per connection", function()
    assert.equal("in-db-2", call("mode=db&db=2").value)
    assert.equal("in-db-3", call("mode=db&db=3").value)
    assert.equal("in-db-2", call("mode=db&db=2").value)
  end)

  it("times out a command and recovers", function()
    local d = call("mode=blocking&timeout=300")
    assert.is_nil(d.v)
    assert.equal("timeout", d.err)
    assert.is_true(d.elapsed < 1, tostring(d.elapsed))
    assert.equal("PONG", d.after)
  end)

  it("does not block the worker while waiting", function()
    local slow = helpers.raw_connect(s.gw.proxy_port)
    assert(slow:send("GET /io?mode=parallel_free&timeout=3000 HTTP/1.1\r\n" ..
                     "Host: x\r\n\r\n"))
    helpers.sleep(0.05)
    local t0 = helpers.gettime()
    assert.equal("PONG", call("mode=ping").v)
    assert.is_true(helpers.gettime() - t0 < 0.3)
    assert.res_status(200, slow:read_response("GET"))
    slow:close()
  end)

  it("a refused connection fails at once", function()
    local d = call("mode=ping&port=" .. helpers.get_free_port())
    assert.is_nil(d.v)
    assert.matches("refused", d.err)
    assert.is_true(d.elapsed < 0.5)
  end)

  it("reports a stopped redis and recovers after its restart", function()
    assert.equal("PONG", call("mode=ping").v)
    local port = s.redis.port
    s.redis.stop()
    local d = call("mode=ping")
    assert.is_nil(d.v)
    assert.is_string(d.err)
    assert.is_true(d.elapsed < 1.5, tostring(d.elapsed))
    d = call("mode=ping")
    assert.matches("refused", d.err)
    red_srv = helpers.redis({ port = port })
    helpers.wait_until(function()
      return call("mode=ping").v == "PONG"
    end, 5)
    assert.equal("PONG", call("mode=ping").v)
  end)

  it("survives a client that leaves while a command waits", function()
    local pids = helpers.worker_pids(s.gw)
    local c = helpers.raw_connect(s.gw.proxy_port)
    assert(c:send("GET /io?mode=blocking&timeout=300 HTTP/1.1\r\n" ..
                  "Host: x\r\n\r\n"))
    helpers.sleep(0.05)
    c:close()
    helpers.sleep(0.5)
    assert.equal("PONG", call("mode=ping").v)
    assert.same(pids, helpers.worker_pids(s.gw))
  end)
end)
