-- Smoke test with the real interpreter (lua5.3 / lua5.4), no emulator:
-- load the shipped loader the way broker does, check the contract, and
-- run one event through send_data_test=1.
--   usage: lua5.x tests/smoke.lua <dir holding canopsis_native_5x.so> <scratch dir>
local so_dir, scratch = arg[1], arg[2]
package.cpath = so_dir .. "/?.so;" .. package.cpath

local function check(cond, msg)
  if not cond then
    io.stderr:write("smoke: FAILED: " .. msg .. "\n")
    os.exit(1)
  end
end

-- Broker 25.10.3 delays the next write when write returns anything but a
-- boolean: every path answers one (pcall: raising is checked apart).
local function boolean(what, f, ...)
  local ok, r = pcall(f, ...)
  check(ok, what .. " raised: " .. tostring(r))
  check(type(r) == "boolean", what .. " returned a " .. type(r) .. ", not a boolean")
  return r
end

dofile("lua/canopsis-native-events-apiv2.lua")
check(type(init) == "function" and type(write) == "function", "init/write globals")
check(type(filter) == "function" and type(flush) == "function", "filter/flush globals")
check(broker_api_version == 2, "broker_api_version = 2")
check(broker_log == nil and broker_cache == nil, "loader must not create broker globals")
check(filter(1, 2) == true, "filter(1, 2) probe before init returns true")

-- Broken configuration: clear log line, no ack, no error raised.
local badlog = scratch .. "/bad.log"
init({ logfile = badlog, canopsis_port = "x" })
check(write({ category = 1, element = 24 }) == false, "misconfigured write must not ack")
boolean("misconfigured write of a host status", write, { category = 1, element = 14, host_id = 1 })
boolean("misconfigured write of a foreign category", write, { category = 3, element = 1 })
check(flush() == false, "misconfigured flush must not ack")
local text = io.open(badlog):read("a")
check(text:find("invalid parameter 'canopsis_authkey'", 1, true), "authkey error logged")
check(text:find("invalid parameter 'canopsis_port'", 1, true), "port error logged")

-- A working configuration in send_data_test mode, with a tiny broker_cache.
broker_cache = {
  get_host = function(_, id) return id == 1 and { name = "srv", instance_id = 1 } or nil end,
  get_service = function(_, h, s) return { description = "Load" } end,
  get_hostgroups = function() return {} end,
  get_servicegroups = function() return {} end,
  get_instance_name = function() return "central" end,
}
-- One log per interpreter: the connector keeps what it sent next to its
-- log (<name>.sent-states), and each run here sends the same event.
-- A HARD CRITICAL service status both connectors accept.
local function critical_load()
  return { category = 1, element = 24, host_id = 1, service_id = 7, state = 2, state_type = 1,
           last_check = 100, last_hard_state_change = 100, output = "CRITICAL - load 9" }
end
local log = scratch .. "/good-" .. _VERSION:gsub("%W", "") .. ".log"
init({ canopsis_host = "canopsis.invalid", canopsis_authkey = "s3cr3t-k3y", send_data_test = 1,
       logfile = log, log_level = 3 })
check(filter(1, 24) == true and filter(1, 2) == false and filter(3, 1) == false, "native filter")
check(write(critical_load()) == false,
      "an accepted event is not acked before delivery")
check(flush() == true, "flush acks once delivered")
-- Filtered (SOFT, then a category the connector does not read), and odd
-- input: a boolean each time.
local soft = critical_load()
soft.state_type = 0
boolean("write of a filtered SOFT status", write, soft)
boolean("write of a foreign category", write, { category = 3, element = 1 })
boolean("write of an event without fields", write, {})
boolean("write of a non-table", write, "not an event")
boolean("flush with nothing pending", flush)
text = io.open(log):read("a")
check(text:find('"resource":"Load"', 1, true), "payload logged")
check(not text:find("s3cr3t-k3y", 1, true), "auth key must not be logged")

-- Errors raised by broker's objects: a field the native code reads is
-- logged and the event acknowledged, a raising cache is a miss; the two
-- fields the loader reads raise to broker, which logs the error.
local function raising(bad)
  local fields = { _type = (1 << 16) | 24, state_type = 1, state = 2, host_id = 1, service_id = 7 }
  return setmetatable({}, { __index = function(_, k)
    if k == bad then error("no field " .. k) end
    return fields[k]
  end })
end
boolean("write of an event whose field raises", write, raising("host_id"))
local ok, acked
local msg
ok, msg = pcall(write, raising("_type"))
check(not ok and tostring(msg):find("no field _type", 1, true), "a raising _type reaches broker")
broker_cache.get_host = function() error("cache down") end
ok, acked = pcall(write, { category = 1, element = 24, host_id = 2, service_id = 7, state = 1,
                           state_type = 1, last_check = 200, last_hard_state_change = 200 })
check(ok and acked == true, "a raising cache must not raise out of write")
text = io.open(log):read("a")
check(text:find("cannot read event: .*no field host_id"), "unreadable event logged")
check(text:find("host 2 is not in broker's cache", 1, true), "a raising cache is a miss")

-- The webhook loader: same module, its own connector, Mattermost messages.
dofile("lua/webhook-native-events.lua")
check(filter(1, 2) == true, "webhook loader: filter(1, 2) probe before init")
broker_cache.get_host = function(_, id) return id == 1 and { name = "srv", instance_id = 1 } or nil end
local hooklog = scratch .. "/hook-" .. _VERSION:gsub("%W", "") .. ".log"
init({ http_server_url = "https://chat.invalid/hooks/s3cr3t-h00k", webhook_format = "mattermost",
       send_data_test = 1, logfile = hooklog, log_level = 3, username = "centreon" })
check(write(critical_load()) == false,
      "webhook: an accepted event is not acked before delivery")
boolean("webhook: write of a filtered SOFT status", write, soft)
check(flush() == true, "webhook: flush acks once delivered")
text = io.open(hooklog):read("a")
check(text:find('"title":"srv / Load is CRITICAL"', 1, true), "webhook: Mattermost message logged")
check(text:find('"username":"centreon"', 1, true), "webhook: username set")
check(not text:find("s3cr3t-h00k", 1, true), "webhook: the hook's key must not be logged")
print("smoke: " .. _VERSION .. " ok")
