"""The shared store: the one Redis/Valkey client of the service, its connections and its scripts.

Owns how the service reaches Redis or Valkey (`client`: one client per URL, standalone or
cluster, the password read from the secret at each new connection, no retries, and
`STORE_ERRORS`, what a store that fails raises), the connections held open for the calls on a
request's path (`connections`), and the Lua scripts run in the store (`scripts/*.lua`, read once
at import). What the keys mean and when a script runs belong to the layers above
(`governance.shared_limits`, `gateway.shared_cooldowns`): this package names no key and decides no
limit. Imported only by a server configured with a store (AIPROXY_REDIS_URL), so only such a
server loads redis-py. Imports no other package of the service.
"""
