-- Position-guarded write of one cached row: an older row never replaces a newer one.
--
-- KEYS[1]  the entry, a hash {pos = <position>, val = <row JSON>}
-- ARGV[1]  the row's position, canonical decimal (u64, no leading zeros)
-- ARGV[2]  the row as JSON
-- ARGV[3]  TTL in milliseconds, set whenever the row is written
--
-- Returns 1 when written, 0 when the same position is already stored, -1 when a newer row is
-- stored (the write is refused).
--
-- Positions are compared as decimal strings, length first and then byte by byte: Lua numbers
-- are doubles, exact only up to 2^53, and `<` on strings follows the server's locale.

local function canonical(text)
  return text == '0' or string.find(text, '^[1-9]%d*$') ~= nil
end

local function greater(a, b)
  if #a ~= #b then
    return #a > #b
  end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x > y
    end
  end
  return false
end

if not canonical(ARGV[1]) then
  return redis.error_reply('position must be a canonical decimal')
end

-- Anything under our key that is not our hash is debris (written by hand or by another
-- program); it carries no position to respect.
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and kind ~= 'hash' then
  redis.call('DEL', KEYS[1])
end

local stored = redis.call('HGET', KEYS[1], 'pos')
if stored and canonical(stored) then
  if stored == ARGV[1] then
    return 0
  end
  if greater(stored, ARGV[1]) then
    return -1
  end
end

redis.call('HSET', KEYS[1], 'pos', ARGV[1], 'val', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
