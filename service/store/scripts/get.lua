-- GET: the value under one key, for a read on a connection held open (service.store.shared_answers).
-- KEYS[1]: the key. Returns the value, or nil.
return redis.call('GET', KEYS[1])
