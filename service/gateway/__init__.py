"""Getting an answer from a provider: which deployment serves a model, in what order, and how.

Owns `routing` (model names, aliases and groups to deployments), `fallback` (trying deployments in
order, with cooldowns, local or shared), `sse` (relaying server-sent events whole) and `providers/`
(OpenAI-compatible upstreams over their own connection pool, Amazon Bedrock). Knows nothing of
HTTP routes or of the incoming request's framing: that is `service.edge`. Imports the layers below
it (`core`, `config`, `ops`, `store`, `governance`).
"""
