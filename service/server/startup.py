"""Checks made once, before the server listens, of configuration only the app can judge.

Settings are checked when the gunicorn master reads its configuration (`service.server.config`). The
client key store and the safety policies its clients name need more: their secrets may live in
Secrets Manager, and the master must not load the app's libraries (every worker would inherit
their memory). So `check_before_listening` forks one short-lived child that reads them as a worker
would; a problem stops the server with one line, before any worker starts, instead of once per
worker followed by gunicorn's own tracebacks.

The port is checked too (`check_port_free`): the workers bind with SO_REUSEPORT, which would let a
second server join one already listening on the port and take part of its connections.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys

from service.config.setting import SettingsError
from service.config.settings import Settings

CONFIGURATION_ERROR = 2
ADDRESS_IN_USE = 1


def check(settings: Settings) -> None:
    """Raise SettingsError (one line) when the app could not start with `settings`."""
    from service.config.secrets import SecretStore
    from service.governance.auth import ClientKeys
    from service.safety.policies import SafetyPolicies

    secrets = SecretStore(
        settings.source, settings.environment_type, settings.environment, ttl=settings.secrets_ttl
    )
    store = ClientKeys(secrets, settings).load_at_start(settings.environment_type)
    SafetyPolicies(secrets).load_at_start(store)


def check_before_listening(settings: Settings) -> None:
    """Run `check` in a child process; exit with its one line when it fails."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: check, say what is wrong, and leave without running any exit handler
        code = 0
        try:
            logging.disable(logging.CRITICAL)  # the workers log what they find; this only judges
            check(settings)
        except SettingsError as error:
            print(f"aiproxy: configuration error: {error}", file=sys.stderr)
            code = CONFIGURATION_ERROR
        except BaseException as error:  # anything else is reported by the workers as they start
            print(f"aiproxy: start-up check failed: {type(error).__name__}", file=sys.stderr)
        finally:
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) == CONFIGURATION_ERROR:
        sys.exit(CONFIGURATION_ERROR)


def check_port_free(host: str, port: int) -> None:
    """Exit with one line when another process already listens on `host`:`port`.

    Each worker binds a socket of its own with SO_REUSEPORT (the kernel spreads connections over
    them), and so could any other server's. A probe bound without SO_REUSEPORT fails where anyone
    listens; with SO_REUSEADDR, as gunicorn's own sockets, closed connections in TIME_WAIT do not
    count. Other failures (a host that does not resolve, a port not allowed) are left to the
    workers, which report them as they bind.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except OSError:
        return
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                return
            shown = f"[{host}]" if ":" in host else host
            print(
                f"aiproxy: cannot listen on {shown}:{port}: another process is already listening there "
                "(stop it, or set PORT to a free port)",
                file=sys.stderr,
            )
            sys.exit(ADDRESS_IN_USE)
