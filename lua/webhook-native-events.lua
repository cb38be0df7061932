-- Centreon Broker stream connector: events to an HTTP endpoint (Mattermost
-- incoming webhook, Logstash http input...), native implementation.
--
-- Point a broker Lua output's "path" here and set http_server_url and
-- webhook_format (mattermost, json or ndjson). Filters, templates, spool and
-- log parameters are those of canopsis-native-events-apiv2.lua. The work is
-- done by the same native library, canopsis_native_53.so (Lua 5.3) or
-- canopsis_native_54.so (Lua 5.4), found on package.cpath.
--
-- Only require + global assignments happen at load time: broker's own
-- globals (broker_log, broker_cache, ...) do not exist yet.

local native = require("canopsis_native_" .. _VERSION:gsub("^Lua (%d+)%.(%d+).*$", "%1%2"))
local connector = native.new("webhook")

broker_api_version = 2

-- C functions bound to this connector: broker calls them directly.
init = connector.init
filter = connector.filter
flush = connector.flush

-- As in the Canopsis loader: the fields deciding most filtered events are
-- read here, in Lua, and handed over with the event.
local native_write = connector.write
function write(event)
  return native_write(event, event._type, event.state_type)
end
