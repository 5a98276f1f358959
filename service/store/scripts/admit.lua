-- ADMIT: run before the provider call, the one round trip a request waits for. Atomically, for
-- the client and, when the request names one, its end user (each a "subject"): the sliding
-- request window, the in-flight slot, the token window, the tokens of the day and the budgets;
-- every subject is checked before anything is counted, so a refused request counts nowhere.
-- KEYS: per subject, 6: requests (zset: member -> admission time), tokens (hash: second -> tokens
--       reserved or used), in_flight (zset: lease -> expiry), spent that day, spent that month,
--       tokens that day; then, when ARGV[6] is not -1, the token id key (a token used once only).
-- ARGV: now ms, window ms, lease, lease expiry ms, request member, token id expiry ms (-1: none),
--       number of subjects, then per subject 7: rpm, max_concurrent, tpm, estimate, budget_day,
--       budget_month, tokens_per_day (each -1: none; the estimate 0 without a tpm).
-- Returns {0, then per subject: requests, first request ms, tokens, first token second, spent_day,
-- spent_month, in flight} when admitted, else {reason, wait ms, spent_day, spent_month, subject}:
-- 1 rpm, 2 max_concurrent, 3 tpm, 4 a budget, 5 tokens_per_day; {6} a token id seen before.
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local lease, lease_expiry, member = ARGV[3], tonumber(ARGV[4]), ARGV[5]
local seen_until, subjects = tonumber(ARGV[6]), tonumber(ARGV[7])
if seen_until >= 0 and redis.call('EXISTS', KEYS[subjects * 6 + 1]) == 1 then
  return {6}
end
local found = {}
for s = 1, subjects do
  local k, a = (s - 1) * 6, 7 + (s - 1) * 7
  local rpm, slots, tpm = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local estimate = tonumber(ARGV[a + 4])
  local budget_day, budget_month, per_day = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6]), tonumber(ARGV[a + 7])
  local requests, in_flight = 0, 0
  if rpm >= 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[k + 1], '-inf', now - window)
    requests = redis.call('ZCARD', KEYS[k + 1])
    if requests >= rpm then
      local opener = redis.call('ZRANGE', KEYS[k + 1], requests - rpm, requests - rpm, 'WITHSCORES')
      return {1, tonumber(opener[2]) + window - now, 0, 0, s}
    end
  end
  if slots >= 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[k + 3], '-inf', now)
    in_flight = redis.call('ZCARD', KEYS[k + 3])
    if in_flight >= slots then
      return {2, 1000, 0, 0, s}
    end
  end
  local tokens, first_second = 0, -1
  if tpm >= 0 then
    local horizon = math.floor((now - window) / 1000)
    local buckets = redis.call('HGETALL', KEYS[k + 2])
    local seconds = {}
    for i = 1, #buckets, 2 do
      local second = tonumber(buckets[i])
      if second <= horizon then
        redis.call('HDEL', KEYS[k + 2], buckets[i])
      else
        tokens = tokens + tonumber(buckets[i + 1])
        table.insert(seconds, {second, tonumber(buckets[i + 1])})
        if first_second < 0 or second < first_second then first_second = second end
      end
    end
    if tokens + estimate > tpm then
      -- Refused: when will enough of the window's tokens have left it? (oldest second first)
      table.sort(seconds, function(x, y) return x[1] < y[1] end)
      local needed, wait = tokens + estimate - tpm, window
      for _, entry in ipairs(seconds) do
        needed = needed - entry[2]
        if needed <= 0 then
          wait = entry[1] * 1000 + window - now
          break
        end
      end
      return {3, wait, 0, 0, s}
    end
  end
  local spent_day = redis.call('GET', KEYS[k + 4]) or '0'
  local spent_month = redis.call('GET', KEYS[k + 5]) or '0'
  if (budget_day >= 0 and tonumber(spent_day) >= budget_day)
      or (budget_month >= 0 and tonumber(spent_month) >= budget_month) then
    return {4, 0, spent_day, spent_month, s}
  end
  if per_day >= 0 and tonumber(redis.call('GET', KEYS[k + 6]) or '0') >= per_day then
    return {5, 0, spent_day, spent_month, s}
  end
  found[s] = {requests, tokens, first_second, spent_day, spent_month, in_flight}
end
local answer = {0}
for s = 1, subjects do
  local k, a = (s - 1) * 6, 7 + (s - 1) * 7
  local rpm, slots, tpm = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local estimate = tonumber(ARGV[a + 4])
  local requests, tokens, first_second, spent_day, spent_month, in_flight = unpack(found[s])
  local first_request = now
  if rpm >= 0 then
    redis.call('ZADD', KEYS[k + 1], now, member)
    redis.call('PEXPIRE', KEYS[k + 1], window + 1000)
    requests = requests + 1
    first_request = tonumber(redis.call('ZRANGE', KEYS[k + 1], 0, 0, 'WITHSCORES')[2])
  end
  if slots >= 0 then
    redis.call('ZADD', KEYS[k + 3], lease_expiry, lease)
    redis.call('PEXPIRE', KEYS[k + 3], lease_expiry - now + 1000)
    in_flight = in_flight + 1
  end
  if tpm >= 0 then
    local second = math.floor(now / 1000)
    redis.call('HINCRBY', KEYS[k + 2], second, estimate)
    redis.call('PEXPIRE', KEYS[k + 2], window + 2000)
    if first_second < 0 then first_second = second end
    tokens = tokens + estimate
  end
  for _, value in ipairs({requests, first_request, tokens, first_second, spent_day, spent_month, in_flight}) do
    table.insert(answer, value)
  end
end
if seen_until >= 0 then
  redis.call('SET', KEYS[subjects * 6 + 1], '1', 'PX', math.max(1, seen_until - now))
end
return answer
