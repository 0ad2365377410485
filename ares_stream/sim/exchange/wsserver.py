"""The local exchange's websocket server: Binance's stream protocol, with injected faults.

Paths ``/stream?streams=a/b`` (combined: ``{"stream":…,"data":…}``) and ``/ws/<stream>[/…]`` or
``/ws`` (raw payloads); ``timeUnit=MICROSECOND`` turns ``E``/``T`` of trades to µs. Control
messages SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, SET_PROPERTY and GET_PROPERTY, with Binance's
replies and error codes; more than 5 incoming messages within a second disconnect. Stream names
match case-insensitively. Like a real server it refuses a request line over 8 KB with HTTP 414
(``uri_too_long``) and a connection asking for more than 1,024 streams (HTTP 400 in the URL,
an error reply to SUBSCRIBE; ``over_cap``); ``max_request_line``, ``max_conn_streams`` and
``max_msg_rate`` (incoming messages within one second on one connection) keep the highest seen.
Each connection has a bounded outbound queue and its own writer task,
so a slow client never stalls the broadcast: one whose queue overflows is dropped (``overflows``).
The depth faults (``skip_depth``, ``skip_depth_every``) leave a depth diff out on one connection
(``depth_skips``): the gap in its ``U``/``u`` is that connection's alone.
The broadcast clock lives in :class:`~ares_stream.sim.exchange.LocalExchange`; it calls
:meth:`WsServer.broadcast` for every tape frame.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, RequestLineTooLong
from websockets.http11 import Request, Response

from ares_stream.sim.exchange.faults import Faults, every, malformed, take

__all__ = ["WsServer", "parse_path"]

_METHODS = "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"
_MAX_STREAMS = 1024  # streams per connection
_MAX_RATE = 5  # incoming messages per second
MAX_REQUEST_LINE = 8192  # bytes of "GET <path> HTTP/1.1\r\n": nginx's default, websockets' own
_Frame = tuple[str, bytes]
_Item = _Frame | bytes | None  # a tape frame, a reply, or None: the tape is over


def parse_path(path: str) -> tuple[bool, list[str], bool] | None:
    """``(combined, streams, microseconds)`` of a handshake path; None for an unknown path.

    >>> parse_path("/stream?streams=btcusdt@aggTrade/ethusdt@trade&timeUnit=MICROSECOND")
    (True, ['btcusdt@aggTrade', 'ethusdt@trade'], True)
    >>> parse_path("/ws/btcusdt@trade"), parse_path("/ws"), parse_path("/foo")
    ((False, ['btcusdt@trade'], False), (False, [], False), None)
    """
    url = urlsplit(path)
    query = parse_qs(url.query)
    micro = query.get("timeUnit", [""])[0].lower() == "microsecond"
    route = url.path.rstrip("/")
    if route == "/stream":
        streams = "/".join(query.get("streams", []))
        return True, [s for s in streams.split("/") if s], micro
    if route == "/ws" or route.startswith("/ws/"):
        return False, [s for s in route[4:].split("/") if s], micro
    return None


def _valid_stream(name: object) -> bool:
    return isinstance(name, str) and 2 < len(name) < 200 and ("@" in name or name[0] == "!")


def _valid_id(rid: object) -> bool:
    if rid is None:
        return True
    if isinstance(rid, str):
        return len(rid) <= 36 and rid.isalnum()
    return type(rid) is int and -(2**63) <= rid < 2**63


def _invalid(why: str, rid: object = None) -> dict[str, Any]:
    return {"code": 2, "msg": f"Invalid request: {why}", "id": rid}


def _is_diff(stream: str) -> bool:
    """Whether a stream carries depth diffs (``@depth``, ``@depth@100ms``; not partial depth).

    >>> [_is_diff(s) for s in ("btcusdt@depth@100ms", "btcusdt@depth", "btcusdt@depth5")]
    [True, True, False]
    """
    kind = stream.partition("@")[2].lower()
    return kind == "depth" or kind.startswith("depth@")


def _to_micro(stream: str, payload: bytes) -> bytes:
    """A trade or aggTrade payload with its ``E`` and ``T`` in microseconds."""
    if stream.partition("@")[2].lower() not in ("trade", "aggtrade"):
        return payload
    data = msgspec.json.decode(payload)
    for key in ("E", "T"):
        if isinstance(data.get(key), int):
            data[key] *= 1000
    return msgspec.json.encode(data)


class _Conn:
    """One client connection: its subscriptions, outbound queue and fault counters."""

    def __init__(self, ws: ServerConnection, combined: bool, micro: bool, max_queue: int) -> None:
        self.ws, self.combined, self.micro = ws, combined, micro
        self.subs: dict[str, str] = {}  # lower-case name → name as subscribed
        self.queue: asyncio.Queue[_Item] = asyncio.Queue(max_queue)
        self.recent: deque[float] = deque()  # arrival times of recent incoming messages
        self.sent = 0  # tape frames handled
        self.depth = 0  # depth diffs handled
        self.malformed = 0  # malformed frames sent
        self.held: bytes | None = None  # a frame held back to send after the next one
        self.ended = False  # a fault ended (or silenced) it: its writer stops

    def wire(self, stream: str, payload: bytes) -> bytes:
        """A tape frame as the client asked: combined-stream envelope, microsecond times."""
        if self.micro:
            payload = _to_micro(stream, payload)
        return (
            b'{"stream":"%s","data":%s}' % (stream.encode(), payload) if self.combined else payload
        )

    def rate(self) -> int:
        """Note an incoming message; how many came within the last second (this one included)."""
        now = time.monotonic()
        self.recent.append(now)
        while self.recent[0] <= now - 1.0:
            self.recent.popleft()
        return len(self.recent)


class _Connection(ServerConnection):
    """websockets' server connection, counting the handshakes it refused as too long (414)."""

    stats: ClassVar[dict[str, int]] = {}  # the server's: set by a subclass per server

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        await super().handshake(*args, **kwargs)
        if isinstance(self.protocol.handshake_exc, RequestLineTooLong):
            self.stats["uri_too_long"] += 1


class WsServer:
    """Binance's websocket streams on ``port`` of ``host`` (0: a free port); see the module
    docstring."""

    def __init__(
        self,
        faults: Faults,
        stats: dict[str, int],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ping_interval: float | None = 20.0,
        max_queue: int = 50_000,
        on_subscribe: Callable[[], None] = lambda: None,
    ) -> None:
        self.faults, self.stats, self.host, self.port = faults, stats, host, port
        self.ping_interval = ping_interval
        self.max_queue = max_queue
        self.on_subscribe = on_subscribe
        self.url = ""
        self._server: Server | None = None
        self._index: dict[str, set[_Conn]] = {}  # lower-case stream → subscribed connections
        self._ended = 0  # connections ended by a fault (for max_drops)
        self.conns: set[_Conn] = set()  # the open connections
        for key in ("uri_too_long", "over_cap", "max_request_line", "max_conn_streams",
                    "max_msg_rate"):
            stats.setdefault(key, 0)

    async def start(self) -> None:
        """Listen on ``port`` (0: a free one); sets :attr:`url`."""
        timeout = None if self.ping_interval is None else 3 * self.ping_interval
        counting = type("_Counting", (_Connection,), {"stats": self.stats})
        self._server = await serve(
            self._handle, self.host, self.port, process_request=self._process_request,
            compression=None, ping_interval=self.ping_interval, ping_timeout=timeout,
            close_timeout=2, create_connection=counting,
        )  # fmt: skip
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://{self.host}:{port}"

    async def stop(self) -> None:
        """Close every connection (1001) and stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def streams(self) -> int:
        """How many distinct streams have a subscriber now."""
        return sum(1 for conns in self._index.values() if conns)

    def drop(self, stream: str) -> int:
        """Abort (no close frame) every connection subscribed to ``stream``; how many."""
        conns = [c for c in self.conns if stream.lower() in c.subs and not c.ended]
        for conn in conns:
            self.stats["drops"] += 1
            self._unindex(conn)
            conn.ended = True
            conn.ws.transport.abort()
        return len(conns)

    def broadcast(self, key: str, stream: str, payload: bytes) -> None:
        """Queue one tape frame for every connection subscribed to ``key`` (lower case)."""
        conns = self._index.get(key)
        if conns:
            for conn in tuple(conns):
                self._offer(conn, (stream, payload))

    def end_of_tape(self) -> None:
        """The tape is over: connections release the frame they hold back, if any."""
        for conn in {conn for conns in self._index.values() for conn in conns}:
            self._offer(conn, None)

    def _offer(self, conn: _Conn, item: _Item) -> None:
        try:
            conn.queue.put_nowait(item)
        except asyncio.QueueFull:  # a slow client: Binance drops it
            self.stats["overflows"] += 1
            self._unindex(conn)
            conn.ended = True
            conn.ws.transport.abort()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if take(self.faults, "refuse_connections"):
            self.stats["refused"] += 1
            return connection.respond(503, "Service Unavailable\n")
        line = len(request.path.encode()) + len("GET  HTTP/1.1\r\n")
        self.stats["max_request_line"] = max(self.stats["max_request_line"], line)
        if line > MAX_REQUEST_LINE:  # websockets refuses longer lines itself (_Connection)
            self.stats["uri_too_long"] += 1
            return connection.respond(414, "Request-URI Too Long\n")
        parsed = parse_path(request.path)
        if parsed is None:
            return connection.respond(404, "Not Found\n")
        if len({s.lower() for s in parsed[1]}) > _MAX_STREAMS:
            self.stats["over_cap"] += 1
            return connection.respond(400, f"More than {_MAX_STREAMS} streams\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None  # the handshake is done
        combined, streams, micro = parse_path(ws.request.path) or (True, [], False)
        conn = _Conn(ws, combined, micro, self.max_queue)
        self.stats["connections"] += 1
        self.conns.add(conn)
        self._subscribe(conn, [s for s in streams if _valid_stream(s)])
        writer = asyncio.create_task(self._write_loop(conn))
        try:
            async for message in ws:
                self.stats["subscribe_messages"] += 1
                rate = conn.rate()
                self.stats["max_msg_rate"] = max(self.stats["max_msg_rate"], rate)
                if rate > _MAX_RATE:
                    self.stats["rate_limited"] += 1
                    await ws.close(1008, "Too many requests")
                    break
                reply = self._control(conn, message)
                if not conn.ended:
                    self._offer(conn, msgspec.json.encode(reply))
        except ConnectionClosed:
            pass
        finally:
            self._unindex(conn)
            self.conns.discard(conn)
            writer.cancel()

    # ---- control messages -------------------------------------------------------------------

    def _control(self, conn: _Conn, message: str | bytes) -> dict[str, Any]:
        """The reply to one incoming message."""
        try:
            request = json.loads(message)
        except ValueError as exc:
            return {"code": 3, "msg": f"Invalid JSON: {exc}", "id": None}
        if not isinstance(request, dict) or "method" not in request:
            return _invalid("missing field `method`")
        rid = request.get("id")
        if not _valid_id(rid):
            return _invalid("request ID must be an unsigned integer")
        method, params = request["method"], request.get("params", [])
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(_valid_stream(p) for p in params):
                return _invalid("invalid stream name", rid)
            if method == "UNSUBSCRIBE":
                self._unsubscribe(conn, params)
            elif len(conn.subs.keys() | {p.lower() for p in params}) > _MAX_STREAMS:
                self.stats["over_cap"] += 1
                return _invalid("too many streams", rid)
            else:
                self._subscribe(conn, params)
            return {"result": None, "id": rid}
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": list(conn.subs.values()), "id": rid}
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            return self._property(conn, method, params, rid)
        return _invalid(f"unknown variant `{method}`, expected one of {_METHODS}", rid)

    def _property(self, conn: _Conn, method: str, params: Any, rid: object) -> dict[str, Any]:
        if not isinstance(params, list) or not params or not isinstance(params[0], str):
            return _invalid("property name must be a string", rid)
        if params[0] != "combined":
            return {"code": 0, "msg": "Unknown property", "id": rid}
        if method == "GET_PROPERTY":
            return {"result": conn.combined, "id": rid}
        if len(params) != 2 or not isinstance(params[1], bool):
            return {"code": 1, "msg": "Invalid value type: expected Boolean", "id": rid}
        conn.combined = params[1]
        return {"result": None, "id": rid}

    def _subscribe(self, conn: _Conn, streams: list[str]) -> None:
        for name in streams:
            conn.subs.setdefault(name.lower(), name)
            if not conn.ended:  # a silenced connection gets nothing more
                self._index.setdefault(name.lower(), set()).add(conn)
        self.stats["max_conn_streams"] = max(self.stats["max_conn_streams"], len(conn.subs))
        if conn.subs:
            self.on_subscribe()

    def _unsubscribe(self, conn: _Conn, streams: list[str]) -> None:
        for name in streams:
            conn.subs.pop(name.lower(), None)
            self._index.get(name.lower(), set()).discard(conn)

    def _unindex(self, conn: _Conn) -> None:
        for key in conn.subs:
            self._index.get(key, set()).discard(conn)

    # ---- the writer: one task per connection, where the faults happen ------------------------

    async def _write_loop(self, conn: _Conn) -> None:
        try:
            while not conn.ended:
                item = await conn.queue.get()
                if item is None:
                    await self._release(conn)
                elif isinstance(item, bytes):
                    await conn.ws.send(item, text=True)
                else:
                    await self._send_frame(conn, *item)
        except ConnectionClosed:
            self._unindex(conn)

    async def _release(self, conn: _Conn) -> None:
        """Send the frame held back by ``swap_every``, now that the next one went out."""
        if conn.held is not None:
            held, conn.held = conn.held, None
            await conn.ws.send(held, text=True)
            self.stats["swaps"] += 1

    async def _send_frame(self, conn: _Conn, stream: str, payload: bytes) -> None:
        conn.sent += 1
        n, f = conn.sent, self.faults
        if _is_diff(stream) and self._skip_depth(conn):
            await self._end_faults(conn, n)
            return
        wire = conn.wire(stream, payload)
        if every(n, f.swap_every) and conn.held is None:
            conn.held = wire
        else:
            await conn.ws.send(wire, text=True)
            await self._release(conn)
            if every(n, f.duplicate_every):
                await conn.ws.send(wire, text=True)
                self.stats["duplicates"] += 1
            if every(n, f.malformed_every):
                await conn.ws.send(malformed(wire, conn.malformed), text=True)
                conn.malformed += 1
                self.stats["malformed"] += 1
        await self._end_faults(conn, n)

    def _skip_depth(self, conn: _Conn) -> bool:
        """Whether a depth fault leaves this diff out on this connection (counted)."""
        conn.depth += 1
        if every(conn.depth, self.faults.skip_depth_every) or take(self.faults, "skip_depth"):
            self.stats["depth_skips"] += 1
            return True
        return False

    async def _end_faults(self, conn: _Conn, n: int) -> None:
        """Silence, shut down, close or drop the connection once it had its frames."""
        f = self.faults
        if f.max_drops and self._ended >= f.max_drops:
            return
        thresholds = (f.silence_after, f.shutdown_after, f.close_every, f.drop_every)
        fault = next((i for i, k in enumerate(thresholds) if 0 < k <= n), None)
        if fault is None:
            return
        self._ended += 1
        conn.ended = True
        self._unindex(conn)
        if fault == 0:
            self.stats["silences"] += 1
        elif fault == 1:
            self.stats["shutdowns"] += 1
            await conn.ws.send(self._shutdown_event(conn), text=True)
            await conn.ws.close(1001, "Server shutdown")
        elif fault == 2:
            self.stats["closes"] += 1
            await conn.ws.close(1000)
        else:
            self.stats["drops"] += 1
            conn.ws.transport.abort()

    def _shutdown_event(self, conn: _Conn) -> bytes:
        event = b'{"e":"serverShutdown","E":%d}' % int(time.time() * 1000)
        return b'{"stream":"!serverShutdown","data":%s}' % event if conn.combined else event
