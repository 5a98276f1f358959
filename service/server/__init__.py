"""The server process: gunicorn's configuration, its hardened worker, and the start-up checks.

Owns `config` (what `gunicorn --config python:service.server.config` reads), `worker` (gunicorn's
gevent worker with the defences against hostile connections and the orderly shutdown) and
`startup` (the configuration check run before the server listens). The gunicorn master imports
only this package, `service.config` and `service.ops.logformat`: the app loads in the workers.
"""
