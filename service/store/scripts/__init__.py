"""The Lua scripts run in the store, one `.lua` file each beside this module, read once at import.

Each file's comment header says its KEYS, ARGV and what it returns; the code that calls it
(`service.governance.shared_limits`) names the keys and reads the answer. The files ship with the
package (the image copies `service/` whole).
"""

from importlib.resources import files


def _read(name: str) -> str:
    return files(__name__).joinpath(f"{name}.lua").read_text(encoding="utf-8")


ADMIT = _read("admit")  # before the provider call: request window, slot, tokens, budgets
SETTLE = _read("settle")  # after it: free the slot, the tokens used, the cost
USAGE = _read("usage")  # what a client has used, changing nothing
GET = _read("get")  # one value (the answer cache's read)
