-- Removes a cached entry that did not parse, unless it changed since it was read.
--
-- KEYS[1]  the entry
-- ARGV[1]  (optional) its `val` field exactly as read; absent when the entry had no `val`
--          field or was not a hash at all
--
-- The compare makes this safe against a concurrent writer: a good row written between our
-- read and this call is left alone. Returns the number of keys removed.

local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'none' then
  return 0
end
if kind ~= 'hash' then
  return redis.call('DEL', KEYS[1])
end

local val = redis.call('HGET', KEYS[1], 'val')
if (#ARGV == 0 and not val) or (#ARGV == 1 and val == ARGV[1]) then
  return redis.call('DEL', KEYS[1])
end
return 0
