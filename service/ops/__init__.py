"""What operators see: log lines, request ids, error reports and metrics.

Owns `logformat` (text and JSON log lines, one record a line), `observability` (logging set-up,
Honeybadger), `metrics` (each request's access line, written as CloudWatch EMF) and `prometheus`
(`GET /metrics`, imported only when it is on). Imports only `service.core` and `service.config`.
"""
