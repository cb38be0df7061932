-- Centreon Broker stream connector: Canopsis events, native implementation.
--
-- Point a broker Lua output's "path" here. Parameters are those of the
-- certified canopsis2x-events-apiv2.lua connector. The work is done by the
-- native library canopsis_native_53.so (Lua 5.3) or canopsis_native_54.so
-- (Lua 5.4), found on package.cpath.
--
-- Only require + global assignments happen at load time: broker's own
-- globals (broker_log, broker_cache, ...) do not exist yet.

local native = require("canopsis_native_" .. _VERSION:gsub("^Lua (%d+)%.(%d+).*$", "%1%2"))
local connector = native.new()

broker_api_version = 2

-- C functions bound to this connector: broker calls them directly.
init = connector.init
filter = connector.filter
flush = connector.flush

-- The fields that decide most filtered events are read here, where the Lua
-- VM reads a field for less than a call from C does; an event these
-- reject (a SOFT status) is answered without reading anything else.
local native_write = connector.write
function write(event)
  return native_write(event, event._type, event.state_type)
end
