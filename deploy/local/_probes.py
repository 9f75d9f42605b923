"""Quick questions to a service: is the port open, does an HTTP endpoint answer 200."""

from __future__ import annotations

import asyncio
import contextlib

import httpx

_PROBE_TIMEOUT = 2.0
_POST_TIMEOUT = 10.0


async def tcp_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on `host:port` (within 2 s)."""
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def http_ok(url: str) -> bool:
    """Whether `GET url` answers with a 2xx status (within 2 s)."""
    try:
        async with httpx.AsyncClient(timeout=_PROBE_TIMEOUT, trust_env=False) as client:
            response = await client.get(url)
    except httpx.HTTPError:
        return False
    return response.is_success


async def http_post(url: str) -> int:
    """`POST url` without a body; return the status code (0 if nothing answered)."""
    try:
        async with httpx.AsyncClient(timeout=_POST_TIMEOUT, trust_env=False) as client:
            response = await client.post(url)
    except httpx.HTTPError:
        return 0
    return response.status_code
