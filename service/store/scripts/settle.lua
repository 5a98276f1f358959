-- SETTLE: run after the provider call. For the client and, when the request named one, its end
-- user: frees the slot, replaces the token estimate with the tokens used, adds the cost and the
-- tokens of the day.
-- KEYS: per subject, 5: tokens, in_flight, spent that day, spent that month, tokens that day.
-- ARGV: lease, token second, cost (USD), day ttl s, month ttl s, number of subjects, then per
--       subject 2: token correction (0: none), tokens used for the day (0: not counted).
-- Returns 1.
local lease, second, cost = ARGV[1], ARGV[2], tonumber(ARGV[3])
for s = 1, tonumber(ARGV[6]) do
  local k, a = (s - 1) * 5, 6 + (s - 1) * 2
  redis.call('ZREM', KEYS[k + 2], lease)
  local correction, today = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  if correction ~= 0 and redis.call('HEXISTS', KEYS[k + 1], second) == 1 then
    redis.call('HINCRBY', KEYS[k + 1], second, correction)
  end
  if cost > 0 then
    redis.call('INCRBYFLOAT', KEYS[k + 3], ARGV[3])
    redis.call('EXPIRE', KEYS[k + 3], tonumber(ARGV[4]))
    redis.call('INCRBYFLOAT', KEYS[k + 4], ARGV[3])
    redis.call('EXPIRE', KEYS[k + 4], tonumber(ARGV[5]))
  end
  if today > 0 then
    redis.call('INCRBY', KEYS[k + 5], today)
    redis.call('EXPIRE', KEYS[k + 5], tonumber(ARGV[4]))
  end
end
return 1
