-- SETTLE: run after the provider call. Frees the slot, replaces the token estimate with the
-- tokens used, adds the cost.
-- KEYS: tokens, in_flight, spent that day, spent that month.
-- ARGV: lease, token second (-1: no tpm), token correction, cost (USD), day ttl s, month ttl s.
-- Returns 1.
redis.call('ZREM', KEYS[2], ARGV[1])
local second, correction = tonumber(ARGV[2]), tonumber(ARGV[3])
if second >= 0 and correction ~= 0 and redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[1], ARGV[2], correction)
end
if tonumber(ARGV[4]) > 0 then
  redis.call('INCRBYFLOAT', KEYS[3], ARGV[4])
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[5]))
  redis.call('INCRBYFLOAT', KEYS[4], ARGV[4])
  redis.call('EXPIRE', KEYS[4], tonumber(ARGV[6]))
end
return 1
