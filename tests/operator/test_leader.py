"""Leader election through a Lease: one holder at a time, a standby takes over once the holder
stops renewing or releases, and a leader that cannot renew gives up before anyone takes over."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

from modelops.clients.kube import LEASES
from modelops.leader import LeaderElector, run_as_leader
from tests.operator.fake_kube import FakeKube


class Clock:
    """A monotonic clock moved by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _elector(kube: FakeKube, identity: str, clock: Clock, **timing: float) -> LeaderElector:
    return LeaderElector(kube, "ops", "modelops-operator", identity, clock=clock, **timing)  # type: ignore[arg-type]


async def _holder(kube: FakeKube) -> str | None:
    lease = await kube.get(LEASES, "ops", "modelops-operator") or {}
    return (lease.get("spec") or {}).get("holderIdentity")


async def test_one_holder_and_takeover_only_after_the_lease_expires() -> None:
    kube, clock_a, clock_b = FakeKube(), Clock(), Clock()
    a, b = _elector(kube, "a", clock_a), _elector(kube, "b", clock_b)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    clock_a.now += 10
    clock_b.now += 10
    assert await a.try_acquire_or_renew()  # renewed: b sees the record change and waits again
    assert not await b.try_acquire_or_renew()
    clock_b.now += 14
    assert not await b.try_acquire_or_renew()
    clock_b.now += 2  # b has seen the same record for 16 s (> 15 s lease), by its own clock
    assert await b.try_acquire_or_renew()
    assert await _holder(kube) == "b"
    lease = await kube.get(LEASES, "ops", "modelops-operator") or {}
    assert lease["spec"]["leaseTransitions"] == 1
    assert not await a.try_acquire_or_renew()  # the former leader does not take it back


async def test_two_candidates_racing_for_an_expired_lease_get_one_winner() -> None:
    kube, clock = FakeKube(), Clock()
    assert await _elector(kube, "old", clock).try_acquire_or_renew()
    b, c = _elector(kube, "b", clock), _elector(kube, "c", clock)
    assert not await b.try_acquire_or_renew() and not await c.try_acquire_or_renew()
    clock.now += 20
    results = await asyncio.gather(b.try_acquire_or_renew(), c.try_acquire_or_renew())
    assert sorted(results) == [False, True]
    assert await _holder(kube) == ("b" if results[0] else "c")


async def test_a_leader_that_cannot_renew_gives_up_before_the_lease_expires() -> None:
    from modelops.clients.kube import Unavailable

    kube, clock = FakeKube(), Clock()
    leader = _elector(kube, "a", clock, lease_duration=15.0, renew_deadline=10.0, retry=0.001)
    assert await leader.try_acquire_or_renew()
    renewed_at = clock.now

    async def api_down(*args: object, **kwargs: object) -> object:
        clock.now += 1.0  # each failed renewal: one second later
        raise Unavailable(0, "Kubernetes API unreachable")

    kube.get = api_down  # type: ignore[method-assign]
    await asyncio.wait_for(leader.hold(), timeout=30)  # returns: leadership given up
    # ... after the renew deadline, and before a standby could take over (lease duration).
    assert leader.renew_deadline <= clock.now - renewed_at < leader.lease_duration


async def test_the_standby_acts_only_after_the_leader_released() -> None:
    kube = FakeKube()
    timing = {"lease_duration": 30.0, "renew_deadline": 20.0, "retry": 0.01}
    a = LeaderElector(kube, "ops", "modelops-operator", "a", **timing)  # type: ignore[arg-type]
    b = LeaderElector(kube, "ops", "modelops-operator", "b", **timing)  # type: ignore[arg-type]
    acting: list[str] = []
    a_may_stop = asyncio.Event()

    async def work_a(stop: asyncio.Event) -> None:
        acting.append("a")
        await a_may_stop.wait()

    async def work_b(stop: asyncio.Event) -> None:
        acting.append("b")

    task_a = asyncio.create_task(run_as_leader(a, work_a))
    while not acting:
        await asyncio.sleep(0.01)
    task_b = asyncio.create_task(run_as_leader(b, work_b))
    await asyncio.sleep(0.1)  # b tried several times meanwhile
    assert acting == ["a"] and not task_b.done()
    a_may_stop.set()  # a ends cleanly and releases: b takes over without waiting 30 s
    assert await asyncio.wait_for(task_a, 5) is True
    assert await asyncio.wait_for(task_b, 5) is True
    assert acting == ["a", "b"]


def test_a_lost_lease_ends_the_process_even_with_a_handler_thread_blocked(tmp_path: Path) -> None:
    """A former leader exits with code 1 at once, although a handler thread is still blocked in a call
    (asyncio.run's teardown would wait for it: the process lived on, acting for nobody)."""
    script = tmp_path / "lost.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, time
            from modelops import runner
            from modelops.settings import Settings

            async def lost(elector, work):
                asyncio.get_running_loop().run_in_executor(None, time.sleep, 3600)  # a blocked handler
                await asyncio.sleep(0.2)
                return False

            class Kube:
                def close(self):
                    pass

            runner.run_as_leader = lost
            runner.KubeClient = Kube
            runner.LeaderElector.from_settings = classmethod(lambda cls, kube, settings: None)
            runner.run(Settings(), liveness=False)
            """
        )
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "leadership lost" in proc.stderr
