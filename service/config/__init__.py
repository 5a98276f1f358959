"""What the service is told: settings, secrets, the price table, and the AWS clients they need.

Owns `settings` (every setting declared once, read from the environment and `config_file`, checked
before the server listens: `setting` says what a setting is, `parsers` parses the plain kinds and
`upstreams`, `model_aliases` and `prices` the JSON-valued ones, once, into typed values),
`secrets` (provider keys, the key store, Redis auth: from the environment or AWS Secrets Manager,
re-read on a schedule), `prices` with its table in `data/`, and `aws` (one boto3 session per
process). Imports only `service.core`.
"""
