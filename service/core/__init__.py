"""The request's building blocks: its state, the answers it can get, and the errors it can meet.

Owns `request_state` (one typed object per request, in a context variable), `responses` (answers
as WSGI apps: JSON, bytes, relayed streams, the steps run when they close), `errors` (every
failure, one hierarchy, and the one place it becomes the OpenAI error shape), `cpu` (pauses that
keep long pure-Python work from stalling a gevent worker) and `text` (what any value becomes in
a header or a log line). Imports nothing else of the service.
"""
