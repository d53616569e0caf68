#!/usr/bin/env python3
"""idle.py PORT COUNT PATH HOLD [h1|h2]: COUNT idle HTTPS keep-alive connections to 127.0.0.1:PORT.

Used by bench/edge/run.

Each connection does its TLS handshake (SNI www.foobar.com, ALPN http/1.1 or h2, no
verification), one GET of PATH (the response read whole), then stays open and idle. Over HTTP/2
(h2) the GET is stream 1 after the preface and an empty SETTINGS frame, the server's SETTINGS are
acknowledged, and the connection then sends nothing more, as a browser's between page loads. At
most 64 connections are being set up at once. Prints `ready N` once N connections are idle, then
holds them until a signal ends it, at most HOLD seconds. Exit 1 (with the reason) if a connection
fails.
"""

import asyncio
import re
import ssl
import struct
import sys

HOST = "www.foobar.com"


async def get_h1(reader, writer, path):
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"answer {head.splitlines()[0]!r}")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if not length:
        raise RuntimeError("no Content-Length")
    await reader.readexactly(int(length.group(1)))


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def hpack_literal(index, value):
    """A header field without indexing, its name the static table's entry `index` (< 15)."""
    value = value.encode()
    assert index < 15 and len(value) < 127
    return bytes([index, len(value)]) + value


async def get_h2(reader, writer, path):
    # :method GET (static 2), :scheme https (7), :path (4) and :authority (1) as literals.
    block = b"\x82\x87" + hpack_literal(4, path) + hpack_literal(1, HOST)
    writer.write(
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        + frame(4, 0, 0)  # SETTINGS, empty
        + frame(1, 0x5, 1, block)  # HEADERS, END_STREAM | END_HEADERS
    )
    await writer.drain()
    status_seen = False
    while True:
        head = await reader.readexactly(9)
        length = int.from_bytes(head[:3], "big")
        kind, flags = head[3], head[4]
        stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
        payload = await reader.readexactly(length)
        if kind == 4 and not flags & 0x1:  # the server's SETTINGS: acknowledged
            writer.write(frame(4, 0x1, 0))
            await writer.drain()
        elif kind == 7:  # GOAWAY
            raise RuntimeError(f"GOAWAY {payload[4:8].hex()}")
        elif kind == 3 and stream == 1:  # RST_STREAM
            raise RuntimeError(f"RST_STREAM {payload.hex()}")
        elif kind == 1 and stream == 1:
            # :status 200 is the static table's entry 8: one byte, 0x88, from every server here.
            if not payload.startswith(b"\x88"):
                raise RuntimeError(f"answer header block {payload[:8].hex()}, not :status 200")
            status_seen = True
        if stream == 1 and kind in (0, 1) and flags & 0x1:  # END_STREAM
            if not status_seen:
                raise RuntimeError("the stream ended without a 200")
            return


async def one(host, port, path, ctx, proto, limit, conns):
    async with limit:
        reader, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=HOST)
        alpn = writer.get_extra_info("ssl_object").selected_alpn_protocol()
        want = "h2" if proto == "h2" else "http/1.1"
        if alpn != want:
            raise RuntimeError(f"ALPN {alpn!r}, not {want}")
        await (get_h2 if proto == "h2" else get_h1)(reader, writer, path)
        conns.append((reader, writer))


async def main():
    port, count, path, hold = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    proto = sys.argv[5] if len(sys.argv) > 5 else "h1"
    if proto not in ("h1", "h2"):
        sys.exit(f"idle.py: protocol {proto!r}: h1 or h2")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2" if proto == "h2" else "http/1.1"])
    limit = asyncio.Semaphore(64)
    conns = []
    try:
        await asyncio.gather(*(one("127.0.0.1", port, path, ctx, proto, limit, conns) for _ in range(count)))
    except Exception as e:  # noqa: BLE001 - any failure ends the measurement
        print(f"idle.py: connection {len(conns) + 1} of {count} failed: {e!r}", file=sys.stderr)
        sys.exit(1)
    print(f"ready {len(conns)}", flush=True)
    await asyncio.sleep(hold)


asyncio.run(main())
