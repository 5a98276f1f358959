"""The HTTP edge: what every request goes through, and the routes that answer it.

Owns `pipeline` (request id, client key, body, admission, errors, settling, the access line),
`bodies` (reading a body within its size and time, parsing JSON), `forwarding` (the request
headers that go on to a provider), `cors` (browsers of listed origins), `signing` (signed
answers), `routes/` (the relayed `/v1` routes as plain WSGI; status, models, assessment, limits
and metrics in Flask) and `openapi/` (the OpenAPI document, its assessment fields described from
the declarations the parser reads with). Imports every
layer below it; only `service.app` and `service.server` import it.
"""
