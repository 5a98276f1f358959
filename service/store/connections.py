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

    def pack_commands(self, commands: list[tuple[Any, ...]]) -> list[bytes]: ...

    def send_packed_command(self, command: list[bytes]) -> None: ...


@dataclass
class Along:
    """A call to send with another on its connection (`OpenConnections.send(along=...)`): both
    go out in one write and their replies come back together, one round trip for the two. How a
    cache hit's entry read rides with the request's admission. A call that could not go along
    (another store, or another node of a cluster) or got an error reply stays unanswered: its
    owner makes it on its own."""

    store: object  # the client the call is meant for: never sent along to another store
    script: Script
    names: list[str]
    arguments: list[Any]
    reply: Any = None
    answered: bool = False


@dataclass
class Sent:
    """A call sent on a connection of its own, its reply not read yet."""

    script: Script
    names: list[str]
    arguments: list[Any]
    connection: Connection
    idle: list[Connection]  # where the connection goes back once its reply is read
    reused: bool  # the connection had served before (the store may have closed it meanwhile)
    along: Along | None = None  # sent just before the call, its reply read first


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

    def run(self, script: Script, names: list[str], arguments: list[Any], along: Along | None = None) -> Any:
        return self.receive(self.send(script, names, arguments, along=along))

    def send(
        self,
        script: Script,
        names: list[str],
        arguments: list[Any],
        *,
        fresh: bool = False,
        along: Along | None = None,
    ) -> Sent:
        """Send the call (and `along` before it, in the same write, when it is for the same store
        and node); `receive` its reply (the connection is the call's until then)."""
        node, pool = self._pool_for(names[0])
        if along is not None and (along.store is not self.store or self._pool_for(along.names[0])[0] != node):
            along = None
        idle = self._idle.setdefault(node, [])
        reused = bool(idle) and not fresh
        connection: Connection = idle.pop() if reused else pool.make_connection()
        call = ("EVALSHA", script.sha, len(names), *names, *arguments)
        try:
            if along is None:
                connection.send_command(*call)
            else:
                first = ("EVALSHA", along.script.sha, len(along.names), *along.names, *along.arguments)
                connection.send_packed_command(connection.pack_commands([first, call]))
        except redis.ConnectionError:
            connection.disconnect()
            if not reused:
                raise
            return self.send(script, names, arguments, fresh=True, along=along)  # closed while idle
        except BaseException:
            connection.disconnect()  # anything may have been written of it
            raise
        return Sent(script, names, arguments, connection, idle, reused, along)

    def receive(self, sent: Sent) -> Any:
        try:
            if sent.along is not None:
                try:
                    sent.along.reply = sent.connection.read_response()
                    sent.along.answered = True
                except redis.ResponseError:
                    pass  # read whole; unanswered, so its owner makes the call itself
            answer = sent.connection.read_response()
        except redis.ResponseError:
            sent.idle.append(sent.connection)  # an error reply, read whole: ready for more
            return sent.script(keys=sent.names, args=sent.arguments)  # the client handles it
        except redis.ConnectionError:
            sent.connection.disconnect()
            if not sent.reused:
                raise
            # The store closed it while it was idle (a restart, a failover, an idle timeout).
            return self.receive(
                self.send(sent.script, sent.names, sent.arguments, fresh=True, along=sent.along)
            )
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
