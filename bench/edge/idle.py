#!/usr/bin/env python3
"""idle.py PORT COUNT PATH HOLD: COUNT idle HTTPS keep-alive connections to 127.0.0.1:PORT.

Used by bench/edge/run.

Each connection does its TLS handshake (SNI www.foobar.com, ALPN http/1.1, no verification),
one GET of PATH (the response read whole), then stays open and idle. At most 64 connections
are being set up at once. Prints `ready N` once N connections are idle, then holds them until a
signal ends it, at most HOLD seconds. Exit 1 (with the reason) if a connection fails.
"""

import asyncio
import re
import ssl
import sys


async def one(host, port, path, ctx, limit, conns):
    async with limit:
        reader, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname="www.foobar.com")
        writer.write(f"GET {path} HTTP/1.1\r\nHost: www.foobar.com\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"answer {head.splitlines()[0]!r}")
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if not length:
            raise RuntimeError("no Content-Length")
        await reader.readexactly(int(length.group(1)))
        conns.append((reader, writer))


async def main():
    port, count, path, hold = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    limit = asyncio.Semaphore(64)
    conns = []
    try:
        await asyncio.gather(*(one("127.0.0.1", port, path, ctx, limit, conns) for _ in range(count)))
    except Exception as e:  # noqa: BLE001 - any failure ends the measurement
        print(f"idle.py: connection {len(conns) + 1} of {count} failed: {e!r}", file=sys.stderr)
        sys.exit(1)
    print(f"ready {len(conns)}", flush=True)
    await asyncio.sleep(hold)


asyncio.run(main())
