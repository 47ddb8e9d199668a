"""A fault-injecting TCP proxy for Kafka clients, in a thread of the test process.

The broker listens on one port and advertises the proxy's, so that every connection a
client makes goes through the proxy. The proxy reads the first request of each connection
for its ``client_id`` (every Kafka request header carries it) and :meth:`FaultProxy.cut`
severs only the connections of the clients it selects: the workers, say, while the
simulated region's gateways (kafka-python) still reach the broker. A severed client's new
connections are closed as soon as it names itself, until :meth:`FaultProxy.restore`.
While :attr:`FaultProxy.delay_s` is set, every byte the broker sends a selected client is
held that long (a slow broker: each response arrives that much later, in order, without
limiting how many are in flight).
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections.abc import Callable


def _client_id(frame: bytes) -> str:
    """The client id of a request frame (after its 4-byte size): api key, api version and
    correlation id, then a nullable int16-length string."""
    if len(frame) < 10:
        return ""
    (n,) = struct.unpack(">h", frame[8:10])
    return frame[10:10 + n].decode(errors="replace") if n > 0 else ""


class FaultProxy:
    def __init__(self, listen_port: int, target_port: int,
                 selects: Callable[[str], bool]) -> None:
        self.listen_port = listen_port
        self.target_port = target_port
        self.selects = selects
        self._cut = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._open: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.severed = 0  # connections closed because of a cut
        self.delay_s = 0.0  # added to every response to a selected client

    def start(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)
        return self

    def stop(self) -> None:
        # Every connection closed and its tasks ended before the loop stops: a task left
        # pending is reported as destroyed when the loop goes.
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _close(self) -> None:
        self._server.close()
        # Each pipe closes the side it writes to as it ends: cancelling them closes both.
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def cut(self) -> None:
        asyncio.run_coroutine_threadsafe(self._set(True), self._loop).result(5)

    def restore(self) -> None:
        asyncio.run_coroutine_threadsafe(self._set(False), self._loop).result(5)

    async def _set(self, cut: bool) -> None:
        self._cut = cut
        if cut:
            for client, server in list(self._open):
                for w in (client, server):
                    w.close()
                self.severed += 1
            self._open.clear()

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.listen_port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            size = await reader.readexactly(4)
            frame = await reader.readexactly(struct.unpack(">i", size)[0])
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        selected = self.selects(_client_id(frame))
        if selected and self._cut:
            writer.close()
            self.severed += 1
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        up_writer.write(size + frame)
        pair = (writer, up_writer)
        if selected:
            self._open.add(pair)
        await asyncio.gather(pipe(reader, up_writer, lambda: 0.0),
                             pipe(up_reader, writer,
                                        (lambda: self.delay_s) if selected else lambda: 0.0))
        self._open.discard(pair)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               delay: Callable[[], float] = lambda: 0.0) -> None:
    """Pass on what one side sends, each chunk ``delay()`` seconds after it came."""
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

    async def take() -> None:
        try:
            while data := await reader.read(1 << 16):
                queue.put_nowait((time.monotonic() + delay(), data))
        except (ConnectionError, OSError):
            pass
        queue.put_nowait(None)

    taking = asyncio.create_task(take())
    try:
        while (item := await queue.get()) is not None:
            due, data = item
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        taking.cancel()
        writer.close()
