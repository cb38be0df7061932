-- Runs the user's custom code (custom_code_file) on one accepted event, as
-- the Lua stream-connector library does: on a fresh table holding the
-- event's fields, the library's compatibility fields and `cache`, wrapped
-- in an object with `event`, `params`, `sc_logger`, `sc_common`,
-- `sc_broker` and `bbdo_version`.
--
-- Compiled once by the native module, which passes the output size limit,
-- a logging function, init's parameter table and the field names of cached
-- hosts and services; returns the function run
-- for each event, run(chunk, self, event, kind) -> keep, event_table (or
-- nil, error), and the object handed to the custom code as `self`.
local limit, log, params, host_fields, service_fields = ...

-- A cached object as a table the custom code may change: broker API 2
-- objects are read-only userdata, read by their known field names when
-- they cannot be iterated.
local function copy(object, names)
  if not object then
    return false
  end
  local t = {}
  local ok = pcall(function()
    for k, v in pairs(object) do
      t[k] = v
    end
  end)
  if not ok then
    t = {}
    for _, name in ipairs(names) do
      t[name] = object[name]
    end
  end
  return t
end

local function cache_of(kind, e)
  local bc = broker_cache
  local c = {}
  if kind == "ba_status" then
    local ba = bc:get_ba(e.ba_id)
    if ba then
      c.ba = { ba_id = e.ba_id, ba_name = ba.ba_name, ba_description = ba.ba_description }
    else
      c.ba = { ba_id = e.ba_id, ba_name = e.ba_id }
    end
    local bvs = {}
    for _, id in ipairs(bc:get_bvs(e.ba_id) or {}) do
      local bv = bc:get_bv(id)
      if bv then
        bvs[#bvs + 1] = { bv_id = id, bv_name = bv.bv_name, bv_description = bv.bv_description }
      end
    end
    c.bvs = bvs
    return c
  end
  local hid, sid = e.host_id, e.service_id
  c.host = copy(bc:get_host(hid), host_fields)
  local iid = c.host and c.host.instance_id
  c.instance = { id = iid, name = iid and bc:get_instance_name(iid) or false }
  c.severity = { host = bc:get_severity(hid) or false }
  c.hostgroups = bc:get_hostgroups(hid) or {}
  if kind ~= "host_status" and sid and sid ~= 0 then
    c.service = copy(bc:get_service(hid, sid), service_fields)
    c.severity.service = bc:get_severity(hid, sid) or false
    c.servicegroups = bc:get_servicegroups(hid, sid) or {}
  end
  return c
end

local function cut(s)
  if limit and type(s) == "string" and #s > limit then
    return string.sub(s, 1, limit)
  end
  return s
end

-- The fields the library adds or rewrites before custom code and formats.
local function patch(kind, e)
  if e.state == nil then
    e.state = e.current_state
  elseif e.current_state == nil then
    e.current_state = e.state
  end
  if kind == "host_status" or kind == "service_status" then
    if e.last_update == nil then e.last_update = e.last_check end
    if e.last_check == nil then e.last_check = e.last_update end
    if e.acknowledged == nil and type(e.acknowledgement_type) == "number" then
      e.acknowledged = e.acknowledgement_type >= 1
    end
    if e.scheduled_downtime_depth == nil then
      e.scheduled_downtime_depth = e.downtime_depth
    end
    local output = e.output or ""
    if type(e.long_output) == "string" and e.long_output ~= "" then
      e.long_output = output .. "\n" .. e.long_output
    else
      e.long_output = output
    end
    e.short_output = cut(string.match(output, "^(.*)\n") or output)
    e.output = cut(e.output)
  elseif kind == "downtime" then
    if e.internal_id == nil then
      e.internal_id = e.id
    elseif e.id == nil then
      e.id = e.internal_id
    end
    -- The object's current state, read from the cache.
    local object = (e.service_id and e.service_id ~= 0) and e.cache.service or e.cache.host
    e.state = object and object.state or nil
  end
end

-- The library's logger, writing to the connector's log.
local sc_logger = {}
for level, name in pairs({ [1] = "error", [2] = "warning", [3] = "notice", [4] = "info", [5] = "debug" }) do
  sc_logger[name] = function(_, message)
    log(level, tostring(message))
  end
end

-- broker's BBDO version as its first number, as the library reads it:
-- "2.0.0" is 2; "3.0.1", and Broker 25.10's "3.1.x", are 3.
local proto = { params = params, sc_logger = sc_logger, bbdo_version = 2 }
if broker and broker.bbdo_version then
  local ok, v = pcall(broker.bbdo_version)
  proto.bbdo_version = ok and tonumber(string.match(tostring(v), "%d+")) or 2
end
-- The library's helpers, when it is installed (centreon-stream-connectors-lib).
local function helper(module, ...)
  local ok, m = pcall(require, "centreon-stream-connectors-lib." .. module)
  if ok and type(m) == "table" and m.new then
    local made, object = pcall(m.new, ...)
    if made then
      return object
    end
  end
  return nil
end
proto.sc_common = helper("sc_common", sc_logger)
proto.sc_broker = helper("sc_broker", params, sc_logger)

local function run(chunk, self, event, kind)
  local e = {}
  for k, v in pairs(event) do
    e[k] = v
  end
  e.cache = cache_of(kind, e)
  patch(kind, e)
  self.event = e
  local ok, r1, keep = pcall(chunk, self)
  if not ok then
    return nil, tostring(r1)
  end
  return keep and true or false, e
end

return run, proto
