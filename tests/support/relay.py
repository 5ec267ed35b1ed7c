"""A fault-injecting TCP relay, run as its own process: <listen>:<port> -> target.

Models a link the kernel here cannot (no netem): a bandwidth cap shared by every
connection (a remote origin's uplink), a cap on each connection (a long link's TCP
window, a server's per-flow limit), latency (a delay line each way: data is late,
not slower), a connection reset every N bytes, and a stall of S seconds every N bytes.
Prints {"port": N} when listening; with --events FILE appends a JSON line per reset or
stall; exits after --lifetime seconds.

    python relay.py --target 127.0.0.1:8080 [--listen 10.0.0.2] [--rate 50MB]
        [--conn-rate 20MB] [--latency 0.05] [--reset-every 100MiB]
        [--stall-every 64MiB --stall 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import time

CHUNK = 256 * 1024
# bytes a delay line holds before the sender waits: bounds memory per connection
IN_FLIGHT = 32
_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "kib": 1024, "mib": 1024**2, "gib": 1024**3}


def size(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)\s*([a-zA-Z]*?)b?", text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text}")
    unit = match.group(2)
    if unit not in _UNITS:
        unit = unit + "b" if unit + "b" in _UNITS else unit
    return float(match.group(1)) * _UNITS.get(unit, 1)


class SharedRate:
    """Reserve link time for n bytes; every connection draws on the same link."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.next_free = time.monotonic()

    async def take(self, n: int) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        start = max(now, self.next_free)
        self.next_free = start + n / self.rate
        if start > now:
            await asyncio.sleep(start - now)


class Relay:
    def __init__(self, args: argparse.Namespace) -> None:
        host, port = args.target.rsplit(":", 1)
        self.target = (host, int(port))
        self.down = SharedRate(args.rate)
        self.conn_rate = args.conn_rate
        self.latency = args.latency
        self.reset_every = args.reset_every
        self.stall_every, self.stall = args.stall_every, args.stall
        self.events = args.events
        self.relayed = 0  # downstream bytes, all connections

    def event(self, kind: str) -> None:
        if self.events:
            with open(self.events, "a") as out:
                out.write(json.dumps({"event": kind, "bytes": self.relayed}) + "\n")

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        up = asyncio.create_task(self.pipe(client_r, server_w, downstream=False))
        down = asyncio.create_task(
            self.pipe(server_r, client_w, downstream=True, own=SharedRate(self.conn_rate))
        )
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        for task in (up, down):
            task.cancel()
        for writer in (client_w, server_w):
            with contextlib.suppress(Exception):
                writer.close()

    async def pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        downstream: bool,
        own: SharedRate | None = None,
    ) -> None:
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(IN_FLIGHT)
        sender = asyncio.create_task(self.deliver(line, writer, downstream))
        try:
            while data := await reader.read(CHUNK):
                if downstream:
                    await self.down.take(len(data))
                if own is not None:
                    await own.take(len(data))
                await line.put((time.monotonic() + self.latency, data))
            await line.put((0.0, b""))
            await sender
        finally:
            sender.cancel()

    async def deliver(
        self,
        line: asyncio.Queue[tuple[float, bytes]],
        writer: asyncio.StreamWriter,
        downstream: bool,
    ) -> None:
        while True:
            due, data = await line.get()
            if not data:
                with contextlib.suppress(Exception):
                    writer.write_eof()
                return
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
            if not downstream:
                continue
            before, self.relayed = self.relayed, self.relayed + len(data)
            if self.stall_every and self.relayed // self.stall_every != before // self.stall_every:
                self.event("stall")
                await asyncio.sleep(self.stall)
            if self.reset_every and self.relayed // self.reset_every != before // self.reset_every:
                self.event("reset")
                sock = writer.transport.get_extra_info("socket")
                if sock is not None:  # RST, not FIN: a reset as a broken link gives
                    sock.setsockopt(1, 13, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # SO_LINGER 0
                writer.transport.abort()
                return


async def serve(args: argparse.Namespace) -> None:
    relay = Relay(args)
    server = await asyncio.start_server(relay.handle, args.listen, args.port)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": port}), flush=True)
    async with server:
        await asyncio.sleep(args.lifetime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True)
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rate", type=size, default=0.0, help="shared cap, bytes/s (0: none)")
    parser.add_argument("--conn-rate", type=size, default=0.0, help="cap per connection")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each way")
    parser.add_argument("--reset-every", type=size, default=0.0, help="reset after N bytes")
    parser.add_argument("--stall-every", type=size, default=0.0, help="stall after N bytes")
    parser.add_argument("--stall", type=float, default=1.0, help="seconds a stall lasts")
    parser.add_argument("--events", default="", help="append resets and stalls here (JSON)")
    parser.add_argument("--lifetime", type=float, default=1800.0)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
