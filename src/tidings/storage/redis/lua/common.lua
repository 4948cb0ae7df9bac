-- Prepended to every per-slot script, before queue_lib.lua and source_lib.lua.

-- redis.call turns Lua numbers into strings with 14 digits; keep every bit of a time.
local function num(x)
  return string.format('%.17g', x)
end

