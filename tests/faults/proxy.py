"""A small asyncio TCP fault proxy (Toxiproxy is not installable here), run in a background thread.

Faults, changeable while it runs (``proxy.faults``):

- ``latency``: seconds added before each chunk is forwarded, both ways;
- ``reset_connections``: the next N answers: the request was forwarded, and when the server starts
  answering, the client side is reset (RST) without the answer: the request was applied, the
  client saw a connection error;
- ``truncate_connections``: the next N answers: only half of the first answer chunk is relayed,
  then the connection closes: a truncated response;
- ``bandwidth``: bytes per second, client -> server (a slow link that must block the producer);
- ``hold``: while True, requests are not forwarded (a stalled link: they wait, unanswered).

``path`` limits resets, truncations and holds to matching requests (``/_bulk``).
``proxy.injected`` counts the faults actually injected, so a test can assert it produced them.
``proxy.heads`` keeps the head (request line and headers) of every request relayed, so a test can
read what a client really sent.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections import Counter
from dataclasses import dataclass


@dataclass
class Faults:
    latency: float = 0.0
    reset_connections: int = 0
    truncate_connections: int = 0
    bandwidth: float | None = None
    hold: bool = False
    path: str = ""  # inject resets/truncations only into answers to requests whose line has this


class FaultProxy:
    """``with FaultProxy("127.0.0.1", 9250) as proxy: use proxy.url``."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.faults = Faults()
        self.injected: Counter[str] = Counter()
        self.heads: list[bytes] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._clients):
            writer.transport.abort()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _take(self, name: str) -> bool:
        with self._lock:
            budget = getattr(self.faults, name)
            if budget > 0:
                setattr(self.faults, name, budget - 1)
                self.injected[name] += 1
                return True
            return False

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.transport.abort()
            return
        self._clients.add(client_writer)
        state = {"request_sent": False, "match": False}  # an answer starts after the client sent something
        upstream = asyncio.create_task(self._pipe(client_reader, up_writer, state))
        try:
            await self._answer(up_reader, client_writer, state)
        except (ConnectionError, OSError):
            pass
        finally:
            self._clients.discard(client_writer)
            upstream.cancel()
            up_writer.transport.abort()
            if not client_writer.transport.is_closing():
                client_writer.close()

    async def _answer(
        self, up_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter, state: dict[str, bool]
    ) -> None:
        while True:
            chunk = await up_reader.read(65536)
            if not chunk:
                return
            if self.faults.latency:
                await asyncio.sleep(self.faults.latency)
            answer_starts, state["request_sent"] = state["request_sent"], False
            if answer_starts and state["match"]:  # the first bytes of an answer: inject here
                if self._take("reset_connections"):
                    sock = client_writer.get_extra_info("socket")
                    if sock is not None:  # linger 0: close sends RST
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    client_writer.transport.abort()
                    return
                if self._take("truncate_connections"):
                    client_writer.write(chunk[: max(1, len(chunk) // 2)])
                    await client_writer.drain()
                    client_writer.close()
                    return
            client_writer.write(chunk)
            await client_writer.drain()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: dict[str, bool]
    ) -> None:
        try:
            while True:
                chunk = await reader.read(8192 if self.faults.bandwidth else 65536)
                if not chunk:
                    writer.close()
                    return
                if self.faults.latency:
                    await asyncio.sleep(self.faults.latency)
                if not state["request_sent"]:  # the first bytes of a request: its request line
                    line = chunk.split(b"\r\n", 1)[0]
                    state["match"] = self.faults.path.encode() in line
                    self.heads.append(chunk.split(b"\r\n\r\n", 1)[0])
                while self.faults.hold and state["match"]:
                    await asyncio.sleep(0.02)
                writer.write(chunk)
                await writer.drain()
                state["request_sent"] = True
                if self.faults.bandwidth:
                    await asyncio.sleep(len(chunk) / self.faults.bandwidth)
        except (ConnectionError, OSError):
            writer.transport.abort()
