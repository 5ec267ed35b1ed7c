"""A fault-injecting TCP relay, run as its own process: 127.0.0.1:<port> -> target.

Models a link the kernel here cannot (no netem): a bandwidth cap shared by every
connection (a remote origin's uplink), added latency, and a connection reset every
N bytes. Prints {"port": N} when listening; exits after --lifetime seconds.

    python relay.py --target 127.0.0.1:8080 --rate 50MB [--latency 0.05] [--reset-every 100MiB]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import time

CHUNK = 256 * 1024
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
        self.latency = args.latency
        self.reset_every = args.reset_every
        self.relayed = 0

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        up = asyncio.create_task(self.pipe(client_r, server_w, None))
        down = asyncio.create_task(self.pipe(server_r, client_w, self.down))
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        for task in (up, down):
            task.cancel()
        for writer in (client_w, server_w):
            with contextlib.suppress(Exception):
                writer.close()

    async def pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rate: SharedRate | None
    ) -> None:
        while data := await reader.read(CHUNK):
            if rate is not None:
                await rate.take(len(data))
            if self.latency:
                await asyncio.sleep(self.latency)
            writer.write(data)
            await writer.drain()
            if rate is not None and self.reset_every:
                before = self.relayed // self.reset_every
                self.relayed += len(data)
                if self.relayed // self.reset_every != before:
                    transport = writer.transport
                    sock = transport.get_extra_info("socket")
                    if sock is not None:  # RST, not FIN: a reset as a broken link gives
                        sock.setsockopt(1, 13, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # SO_LINGER 0
                    transport.abort()
                    return
        with contextlib.suppress(Exception):
            writer.write_eof()


async def serve(args: argparse.Namespace) -> None:
    relay = Relay(args)
    server = await asyncio.start_server(relay.handle, "127.0.0.1", args.port)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": port}), flush=True)
    async with server:
        await asyncio.sleep(args.lifetime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rate", type=size, default=0.0, help="shared cap, bytes/s (0: none)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per chunk")
    parser.add_argument("--reset-every", type=size, default=0.0, help="reset after N bytes")
    parser.add_argument("--lifetime", type=float, default=1800.0)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
