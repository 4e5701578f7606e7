"""Before/after speed of the emulator: ``python -m modelops.sandbox.emulator.bench --count 200``.

Creates ``count`` ModelVersions one after another over HTTP (an aiohttp client in the same
process and event loop as the server), first against plain ``kmock.KubernetesEmulator`` 0.8
("before"), then against :class:`~.server.ApiEmulator` ("after"), and prints the wall time of
each, of the last 50 creates (kmock's cost grows with its journal), and of one list.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import time
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import yaml

from .catalogue import read_crds
from .server import ApiEmulator

ROOT = Path(__file__).resolve().parents[4]
COLLECTION = "/apis/ml.smarthr360.io/v1alpha1/namespaces/default/modelversions"


def _sample() -> dict[str, Any]:
    path = ROOT / "manifests" / "samples" / "modelversion-1.0.0.yaml"
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    return doc


async def _run(emulator: kmock.RawHandler, count: int) -> dict[str, float]:
    body = _sample()
    async with emulator, kmock.Server(emulator) as server:
        async with aiohttp.ClientSession(base_url=str(server.url)) as client:
            started = time.perf_counter()
            tail = started
            for i in range(count):
                if i == count - 50:
                    tail = time.perf_counter()
                obj = copy.deepcopy(body)
                obj["metadata"] = {"name": f"bench-{i:05d}", "namespace": "default"}
                async with client.post(COLLECTION, json=obj) as response:
                    if response.status not in (200, 201):  # kmock 0.8 answers 200 to a create
                        raise RuntimeError(f"create {i} answered {response.status}: {await response.text()}")
            created = time.perf_counter()
            async with client.get(COLLECTION) as response:
                items = (await response.json())["items"]
            listed = time.perf_counter()
            if len(items) != count:
                raise RuntimeError(f"listed {len(items)} objects, expected {count}")
    return {"total": created - started, "last50": created - tail, "list": listed - created}


def plain_kmock() -> kmock.KubernetesEmulator:
    """kmock 0.8 as it comes, with the resource and the namespace declared (kopf needs v1/namespaces)."""
    emulator = kmock.KubernetesEmulator()
    emulator.resources["ml.smarthr360.io/v1alpha1/modelversions"] = {
        "kind": "ModelVersion",
        "namespaced": True,
        "singular": "modelversion",
        "verbs": ["create", "list"],
        "shortnames": [],
        "categories": [],
        "subresources": ["status"],
    }
    emulator.resources["v1/namespaces"] = {
        "kind": "Namespace",
        "namespaced": False,
        "singular": "namespace",
        "verbs": ["list"],
        "shortnames": [],
        "categories": [],
        "subresources": [],
    }
    return emulator


def main() -> None:
    """Print before/after timings (seconds)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="objects to create (default 200)")
    parser.add_argument("--skip-before", action="store_true", help="measure the ApiEmulator only")
    args = parser.parse_args()
    runs: list[tuple[str, kmock.RawHandler]] = []
    if not args.skip_before:
        runs.append(("kmock 0.8 KubernetesEmulator", plain_kmock()))
    runs.append(("modelops ApiEmulator", ApiEmulator(crds=read_crds(ROOT / "crds"))))
    for label, emulator in runs:
        result = asyncio.run(_run(emulator, args.count))
        print(
            f"{label}: {args.count} creates {result['total']:.2f} s "
            f"({result['total'] / args.count * 1000:.1f} ms each; last 50: "
            f"{result['last50'] / 50 * 1000:.1f} ms each), list {result['list'] * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
