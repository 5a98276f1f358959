"""Student safety: what a client sends and what a model answers, checked by the client's policy.

Owns `policy` (the named policies of AIPROXY_SAFETY_POLICIES, parsed once into frozen dataclasses),
`policies` (the current policies, re-read when their secret changes, and checked against the key
store), one module per check (`blocklist`, `moderation`, `judge` with its versioned prompts in
`prompts/`, `comprehend`), `pii` (e-mail addresses, phone numbers, street addresses), `texts`
(the text of an OpenAI-shaped request or answer), `runner` (a phase's checks, concurrently, with
their timeouts, records and `on_error`), `answers` (the refusals and the emptied whole answer),
`stream` (the stream output filter) and `gate` (what the routes call). Calls models through the
proxy's own routing (`service.gateway`) and records their tokens as usage (`service.governance`);
imports the layers below it, never `service.edge` or `service.assessment`.
"""
