-- USAGE: what a client or an end user has used, as every process counted it (GET /v1/limits);
-- changes nothing.
-- KEYS: requests, tokens, in_flight, spent that day, spent that month, tokens that day.
-- ARGV: now ms, window ms.
-- Returns {requests, tokens, in flight, spent_day, spent_month, tokens_today}.
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local requests = redis.call('ZCOUNT', KEYS[1], now - window, '+inf')
local horizon = math.floor((now - window) / 1000)
local buckets = redis.call('HGETALL', KEYS[2])
local tokens = 0
for i = 1, #buckets, 2 do
  if tonumber(buckets[i]) > horizon then tokens = tokens + tonumber(buckets[i + 1]) end
end
local in_flight = redis.call('ZCOUNT', KEYS[3], now, '+inf')
return {requests, tokens, in_flight, redis.call('GET', KEYS[4]) or '0', redis.call('GET', KEYS[5]) or '0',
        redis.call('GET', KEYS[6]) or '0'}
