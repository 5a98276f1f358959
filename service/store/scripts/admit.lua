-- ADMIT: run before the provider call, the one round trip a request waits for. Atomically:
-- the sliding request window, the in-flight slot, the token window and the budgets.
-- KEYS: requests (zset: member -> admission time), tokens (hash: second -> tokens reserved or used),
--       in_flight (zset: lease -> expiry), spent that day, spent that month.
-- ARGV: now ms, window ms, rpm, max_concurrent, tpm (-1: none), estimate, lease, lease expiry ms,
--       budget_day (-1: none), budget_month (-1: none), request member.
-- Returns {0, requests, first request ms, tokens, first token second, spent_day, spent_month,
-- in flight} when admitted, else {reason, wait ms, ...}: 1 rpm, 2 max_concurrent, 3 tpm, 4 a budget.
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local requests = redis.call('ZCARD', KEYS[1])
local rpm = tonumber(ARGV[3])
if requests >= rpm then
  local opener = redis.call('ZRANGE', KEYS[1], requests - rpm, requests - rpm, 'WITHSCORES')
  return {1, tonumber(opener[2]) + window - now}
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local in_flight = redis.call('ZCARD', KEYS[3])
if in_flight >= tonumber(ARGV[4]) then
  return {2, 1000}
end
local tpm, estimate = tonumber(ARGV[5]), tonumber(ARGV[6])
local tokens, first_second = 0, -1
if tpm >= 0 then
  local horizon = math.floor((now - window) / 1000)
  local buckets = redis.call('HGETALL', KEYS[2])
  for i = 1, #buckets, 2 do
    local second = tonumber(buckets[i])
    if second <= horizon then
      redis.call('HDEL', KEYS[2], buckets[i])
    else
      tokens = tokens + tonumber(buckets[i + 1])
      if first_second < 0 or second < first_second then first_second = second end
    end
  end
  if tokens + estimate > tpm then
    -- Refused: when will enough of the window's tokens have left it? (oldest second first)
    local seconds = {}
    for i = 1, #buckets, 2 do
      local second = tonumber(buckets[i])
      if second > horizon then table.insert(seconds, {second, tonumber(buckets[i + 1])}) end
    end
    table.sort(seconds, function(a, b) return a[1] < b[1] end)
    local needed, wait = tokens + estimate - tpm, window
    for _, entry in ipairs(seconds) do
      needed = needed - entry[2]
      if needed <= 0 then
        wait = entry[1] * 1000 + window - now
        break
      end
    end
    return {3, wait, tokens}
  end
end
local spent_day = redis.call('GET', KEYS[4]) or '0'
local spent_month = redis.call('GET', KEYS[5]) or '0'
local budget_day, budget_month = tonumber(ARGV[9]), tonumber(ARGV[10])
if (budget_day >= 0 and tonumber(spent_day) >= budget_day)
    or (budget_month >= 0 and tonumber(spent_month) >= budget_month) then
  return {4, 0, spent_day, spent_month}
end
redis.call('ZADD', KEYS[1], now, ARGV[11])
redis.call('PEXPIRE', KEYS[1], window + 1000)
redis.call('ZADD', KEYS[3], tonumber(ARGV[8]), ARGV[7])
redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[8]) - now + 1000)
if tpm >= 0 then
  local second = math.floor(now / 1000)
  redis.call('HINCRBY', KEYS[2], second, estimate)
  redis.call('PEXPIRE', KEYS[2], window + 2000)
  if first_second < 0 then first_second = second end
  tokens = tokens + estimate
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, requests + 1, tonumber(first[2]), tokens, first_second, spent_day, spent_month, in_flight + 1}
