"""Client key tool: `python -m service.keys new <client>`, `... hash`, `... check`.

- `new <client>` makes a random key (256 bits, prefixed `aip_`), prints it once, and prints the
  key store entry that holds its hash. The key itself is kept nowhere.
- `hash` reads one key on stdin and prints its hash (to add a key you already have).
- `check` reads a key store on stdin and says whether the proxy would accept it.

docs/client-keys.md shows how to add, rotate and revoke keys with these.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from collections.abc import Callable, Sequence

from service.config.settings import load_settings
from service.governance.auth import default_limits
from service.governance.key_store import CLIENT_NAME, KEY_PREFIX, RESERVED_NAMES, hash_key, parse_key_store
from service.governance.limits import Limits

KEY_BYTES = 32  # 256 bits of randomness


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def _default_limits() -> Limits:
    """The limits the proxy applies to entries without their own (configured settings included)."""
    return default_limits(load_settings())


def _client_name(value: str) -> str:
    if not CLIENT_NAME.match(value) or value in RESERVED_NAMES:
        raise argparse.ArgumentTypeError(
            "use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= 100000:
        raise argparse.ArgumentTypeError("use a whole number from 1 to 100000")
    return number


def command_new(args: argparse.Namespace) -> int:
    key = new_key()
    entry: dict[str, object] = {"keys": [hash_key(key)]}
    if args.rpm:
        entry["rpm"] = args.rpm
    if args.max_concurrent:
        entry["max_concurrent"] = args.max_concurrent
    print(f"New key for client {args.client!r}. It is shown only now: hand it to the client securely.")
    print()
    print(key)
    print()
    print("Add this entry to the key store (AIPROXY_CLIENT_KEYS or the client_api_keys secret).")
    print('To rotate a key, add the new hash to the client\'s existing "keys" list instead:')
    print()
    print(json.dumps({args.client: entry}))
    return 0


def command_hash(args: argparse.Namespace) -> int:
    key = sys.stdin.read().strip()
    if not key:
        print("service.keys hash: no key on stdin", file=sys.stderr)
        return 2
    print(hash_key(key))
    return 0


def command_check(args: argparse.Namespace) -> int:
    try:
        store = parse_key_store(sys.stdin.read(), _default_limits())
    except ValueError as error:
        print(f"service.keys check: the key store is not valid: {error}", file=sys.stderr)
        return 1
    print(f"Valid key store with {len(store.clients)} client(s):")
    for client in store.clients.values():
        print(
            f"  {client.name}: {len(client.key_hashes)} key(s), rpm {client.limits.rpm}, "
            f"max_concurrent {client.limits.max_concurrent}"
        )
    return 0


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m service.keys", description="Manage AI Proxy client keys.")
    commands = main.add_subparsers(dest="command", required=True)
    new = commands.add_parser("new", help="make a new key for a client and print its key store entry")
    new.add_argument("client", type=_client_name, help="the client's name, as logs will show it")
    new.add_argument("--rpm", type=_positive, help="requests per minute (default: AIPROXY_DEFAULT_RPM)")
    new.add_argument(
        "--max-concurrent",
        type=_positive,
        help="requests in flight at once (default: AIPROXY_DEFAULT_MAX_CONCURRENT)",
    )
    new.set_defaults(run=command_new)
    commands.add_parser("hash", help="read a key on stdin and print its hash").set_defaults(run=command_hash)
    commands.add_parser("check", help="read a key store on stdin and validate it").set_defaults(
        run=command_check
    )
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
