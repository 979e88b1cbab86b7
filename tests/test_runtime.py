"""Process plumbing that users never see but always feel."""

from __future__ import annotations

import asyncio
import socket

from genai_jobs.runtime import bind


def test_served_connections_have_nagle_off() -> None:
    """asyncio disables Nagle's algorithm only on sockets of protocol TCP. Without it, a
    response written in two parts (headers, then body) waits for the client's delayed
    ACK: some 40 ms added to every request."""
    listener = bind("127.0.0.1", 0)
    port = listener.getsockname()[1]
    seen: list[int] = []

    async def check() -> None:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(accepted, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(200):  # bounded: the server answers within milliseconds
                if seen:
                    break
                await asyncio.sleep(0.01)
            writer.close()

    asyncio.run(check())
    assert seen == [1]
