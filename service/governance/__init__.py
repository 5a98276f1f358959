"""Who may call, how much, and what it cost: client keys, limits, budgets and usage records.

Owns `auth` (the key store and the check of a client key or an end-user token), `end_user_tokens`
(verifying a client's signed end-user tokens), `end_users` (who the end user is, their keyed hash,
what an entry lets through), `windows` and `limits` (rpm, tpm, in-flight slots and budgets in one
process), `end_user_limits` (an end user's own), `shared_limits` (the same, counted in the shared
store for every process), `usage` (one usage record per provider call, with its tokens and
cost) and `ownership` (which client created which file and batch). The
operators' key tool is `service.keys`, above this package. Imports `service.core`,
`service.config`, `service.ops` and `service.store`, never the gateway or the edge above it.
"""
