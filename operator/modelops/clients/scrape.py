"""Scrape serving pods' ``/metrics`` (the operator's rollout analysis; no Prometheus needed).

The only HTTP the operator does to pods. aiohttp is kopf's own HTTP client, so nothing is added.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp


class ScrapeError(Exception):
    """A pod's /metrics could not be read (connection refused, timeout, non-200)."""


async def scrape(urls: Mapping[str, str], timeout: float) -> dict[str, str | ScrapeError]:
    """GET each of ``{pod name: metrics URL}`` concurrently; ``{pod name: exposition text or the error}``.

    Never raises for a pod's failure: the caller decides what an unreadable pod means.
    """
    if not urls:
        return {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:

        async def one(url: str) -> str | ScrapeError:
            try:
                async with session.get(url) as response:
                    if response.status != 200:
                        return ScrapeError(f"{url} answered {response.status}")
                    return await response.text()
            except (aiohttp.ClientError, TimeoutError) as exc:
                return ScrapeError(f"{url}: {type(exc).__name__} {exc}".rstrip())

        texts = await asyncio.gather(*(one(url) for url in urls.values()))
    return dict(zip(urls, texts, strict=True))
