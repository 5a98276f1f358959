"""`make demo`: the proxy in front of a local stand-in provider, to try with no key and no network.

    python -m testbed.demo [--port 5000] [--provider-port 5001]

starts the stand-in provider (`testbed.stand_in`) in this process and the proxy with the command
of `make run` (gunicorn with service.server.config's configuration) on 127.0.0.1, pointed at it; prints
the first commands to try and then the proxy's log lines; on Ctrl-C (or SIGTERM) stops the proxy
it started, then the stand-in. The proxy gets the demo's settings only (`running_server`): not
config.txt, not your environment's keys, no client key store.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from testbed.server import RunningServer, running_server
from testbed.stand_in import StandIn

PORT = 5000  # the proxy's, as with `make run`
PROVIDER_PORT = 5001  # the Makefile's DEMO_PROVIDER_PORT default, which `make evaluate DEMO=1` uses
# The stand-in checks no key, but the proxy relays only when it has one.
PROVIDER_KEY = "demo"
# Opens the demo's GET /metrics (API.md's example sends it); a local demo's, never a deployment's.
METRICS_KEY = "demo-metrics-key"
# A safety policy API.md's /v1/safety/check example names: local checks only (no model asked).
SAFETY_POLICIES = '{"classroom": {"input": [{"check": "blocklist", "words": ["badword"]}], "pii": "redact"}}'


@contextmanager
def running_demo(port: int, provider_port: int) -> Iterator[tuple[StandIn, RunningServer]]:
    """The stand-in provider and the proxy pointed at it; both stopped on the way out."""
    with (
        StandIn(port=provider_port) as provider,
        running_server(
            {
                "PORT": str(port),
                "OPENAI_BASE_URL": provider.url,
                "OPENAI_API_KEY": PROVIDER_KEY,
                "AIPROXY_METRICS_KEY": METRICS_KEY,
                "AIPROXY_SAFETY_POLICIES": SAFETY_POLICIES,
            }
        ) as proxy,
    ):
        yield provider, proxy


def first_commands(proxy_url: str, provider_port: int) -> str:
    """What to paste into another terminal (the README's quick start shows the same)."""
    evaluate = "make evaluate DEMO=1"
    if provider_port != PROVIDER_PORT:
        evaluate += f" DEMO_PROVIDER_PORT={provider_port}"
    return f"""\
export AIPROXY={proxy_url}
curl $AIPROXY/v1/chat/completions -H 'Content-Type: application/json' \\
  -d '{{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "Say hello"}}]}}'
curl -N $AIPROXY/v1/chat/completions -H 'Content-Type: application/json' \\
  -d '{{"model": "gpt-4o-mini", "stream": true, "messages": [{{"role": "user", "content": "Count to 3"}}]}}'
curl "$AIPROXY/test/assessment?num-responses=3"
{evaluate}"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or PORT), help="the proxy's")
    parser.add_argument("--provider-port", type=int, default=PROVIDER_PORT, help="the stand-in provider's")
    args = parser.parse_args(argv)
    # Ctrl-C and SIGTERM go through the clean-up below. SIGINT too, because a shell starts a
    # background job with SIGINT ignored, and Python then leaves it ignored.
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.default_int_handler)
    try:
        with running_demo(args.port, args.provider_port) as (provider, proxy):
            with open(proxy.log_path, encoding="utf-8", errors="replace") as log:
                _copy(log, sys.stdout)  # the proxy's start-up lines
                commands = first_commands(proxy.url, provider.port).replace("\n", "\n    ")
                print(
                    f"\nThe demo is running: the proxy on {proxy.url}, relaying to a stand-in provider on "
                    f"{provider.url}\n(no provider key, no network; its grades are counts, not a model's "
                    f"judgement). In another terminal, try:\n\n    {commands}\n\n"
                    "Ctrl-C stops the proxy and the stand-in. The proxy's log lines follow.\n",
                    flush=True,
                )
                while proxy.process.poll() is None:
                    _copy(log, sys.stdout)
                    time.sleep(0.2)
                _copy(log, sys.stdout)
            print(f"The proxy stopped by itself (exit status {proxy.process.returncode}).", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("\nStopped the proxy and the stand-in provider.", flush=True)
        return 0
    except OSError as error:  # the stand-in's port is in use
        print(f"demo: {error} (choose another with DEMO_PROVIDER_PORT=...)", file=sys.stderr)
        return 1
    except RuntimeError as error:  # the proxy did not start: its log says why (a port in use?)
        print(f"demo: {error}", file=sys.stderr)
        return 1


def _copy(source: TextIO, target: TextIO) -> None:
    text = source.read()
    if text:
        target.write(text)
        target.flush()


if __name__ == "__main__":
    sys.exit(main())
