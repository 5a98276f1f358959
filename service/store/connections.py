"""Connections to the store held open for the calls on a request's path, outside the client's pool."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script

from service.store.client import Store


class Connection(Protocol):
    """What is used of a connection the client's pool makes (redis-py leaves its methods untyped)."""

    def send_command(self, *args: Any) -> None: ...

    def read_response(self) -> Any: ...

    def disconnect(self) -> None: ...


@dataclass
class Sent:
    """A call sent on a connection of its own, its reply not read yet."""

    script: Script
    names: list[str]
    arguments: list[Any]
    connection: Connection
    idle: list[Connection]  # where the connection goes back once its reply is read
    reused: bool  # the connection had served before (the store may have closed it meanwhile)


class OpenConnections:
    """Run a script with one command on a connection to the store kept open between calls: the
    way of the calls on a request's path (ADMIT, SETTLE).

    A call through a redis-py client checks a connection out of its pool (polling it) and back,
    inside retry and deprecation layers: on this service's machine that costs as much CPU as the
    round trip itself, and more added latency than the store's whole budget (docs/benchmarks.md).
    A call may also be sent now and its reply read later (`send`, `receive`). The connections come
    from the client's own pool (`make_connection`: its address, TLS, user and password, timeouts),
    one per call under way, and in a cluster from the pool of the node that holds the keys' slot.
    An error reply the client knows how to handle (a moved slot, a store that lost its scripts) is
    left to it: the call is made again through the client.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._idle: dict[str, list[Connection]] = {}  # node -> connections open and not in use

    def run(self, script: Script, names: list[str], arguments: list[Any]) -> Any:
        return self.receive(self.send(script, names, arguments))

    def send(self, script: Script, names: list[str], arguments: list[Any], *, fresh: bool = False) -> Sent:
        """Send the call; `receive` its reply (the connection is the call's until then)."""
        node, pool = self._pool_for(names[0])
        idle = self._idle.setdefault(node, [])
        reused = bool(idle) and not fresh
        connection: Connection = idle.pop() if reused else pool.make_connection()
        try:
            connection.send_command("EVALSHA", script.sha, len(names), *names, *arguments)
        except redis.ConnectionError:
            connection.disconnect()
            if not reused:
                raise
            return self.send(script, names, arguments, fresh=True)  # closed while idle: a new one
        except BaseException:
            connection.disconnect()  # anything may have been written of it
            raise
        return Sent(script, names, arguments, connection, idle, reused)

    def receive(self, sent: Sent) -> Any:
        try:
            answer = sent.connection.read_response()
        except redis.ResponseError:
            sent.idle.append(sent.connection)  # an error reply, read whole: ready for more
            return sent.script(keys=sent.names, args=sent.arguments)  # the client handles it
        except redis.ConnectionError:
            sent.connection.disconnect()
            if not sent.reused:
                raise
            # The store closed it while it was idle (a restart, a failover, an idle timeout).
            return self.receive(self.send(sent.script, sent.names, sent.arguments, fresh=True))
        except BaseException:
            sent.connection.disconnect()  # anything else may have left half a reply on it
            raise
        sent.idle.append(sent.connection)
        return answer

    def _pool_for(self, key: str) -> tuple[str, redis.ConnectionPool]:
        if isinstance(self.store, RedisCluster):
            node = self.store.get_node_from_key(key)  # type: ignore[no-untyped-call]  # unannotated in redis-py
            return node.name, self.store.get_redis_connection(node).connection_pool
        return "", self.store.connection_pool
