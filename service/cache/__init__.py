"""The answer cache: the same question, asked again, answered from the shared store.

Owns `settings` (a client's `cache` entry: time to live, largest answer, shared namespace, whether
sampled answers are kept), `entries` (the key of a question: its namespace, route, resolved model
and body in canonical form; an entry's encoding; `AnswerCache`, reading and keeping entries in
an `service.store.answers.AnswerStore`), `policy` (`Cache-Control` per request, what may be read or
kept: deterministic requests, finished answers) and `recording` (an answer's bytes kept as they go
to the client; an entry answered again, a stream as the events it was). It decides nothing about
limits or usage records: the edge does (`service.edge.caching`). Imports `service.core` and
`service.store.answers` (never redis-py: the shared store is handed in), nothing above.
"""
