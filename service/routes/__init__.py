"""HTTP routes, one blueprint per area."""

# Streamed answers must reach the client as they are written: no caching, and no buffering by a
# proxy in front (nginx honours X-Accel-Buffering).
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
