"""GET serving pods' endpoints: ``/metrics`` (the operator's rollout analysis; no Prometheus needed)
and the not-ready answer of ``/v2/health/ready`` (a server's refusal of its model).

The only HTTP the operator does to pods. aiohttp is kopf's own HTTP client, so nothing is added.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping

import aiohttp


class ScrapeError(Exception):
    """A pod's endpoint could not be read (connection refused, timeout, another status than expected)."""


async def scrape(
    urls: Mapping[str, str], timeout: float, statuses: Collection[int] = (200,)
) -> dict[str, str | ScrapeError]:
    """GET each of ``{pod name: URL}`` concurrently; ``{pod name: body text or the error}``.

    ``statuses``: the HTTP statuses whose body is wanted (others are a :class:`ScrapeError`);
    ``timeout``: seconds for all the GETs together. Never raises for a pod's failure: the caller
    decides what an unreadable pod means.
    """
    if not urls:
        return {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:

        async def one(url: str) -> str | ScrapeError:
            try:
                async with session.get(url) as response:
                    if response.status not in statuses:
                        return ScrapeError(f"{url} answered {response.status}")
                    return await response.text()
            except (aiohttp.ClientError, TimeoutError) as exc:
                return ScrapeError(f"{url}: {type(exc).__name__} {exc}".rstrip())

        texts = await asyncio.gather(*(one(url) for url in urls.values()))
    return dict(zip(urls, texts, strict=True))
