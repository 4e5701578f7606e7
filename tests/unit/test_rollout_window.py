"""The window numbers from the serving pods' /metrics (modelops.rollout.window): what is kept of an
exposition, increases with counter resets, pods appearing and disappearing, the histogram quantile,
agreement, and the state surviving a round trip through status (an operator restart)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from modelops.api.modelversion import RolloutSpec, RolloutStatus, SideCounters, WindowCounters
from modelops.contract import RouterConfig
from modelops.rollout.decision import decide, dropped_copies_warning, plan_steps
from modelops.rollout.window import (
    accumulate,
    class_agreement,
    histogram_quantile,
    increase,
    series,
    window_numbers,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _server_exposition() -> tuple[str, object, object]:
    """A model server's and its router's registry as the incumbent's pods expose them."""
    serve_metrics = pytest.importorskip("modelops_runtime.serve.metrics")
    router_mod = pytest.importorskip("modelops_runtime.serve.router")
    server = serve_metrics.ServerMetrics("m", "1.0.0")
    server.set_classes([0, 1])
    router = router_mod.Router(
        RouterConfig(mode="shadow", url="http://candidate", version="1.1.0", registry_version="2"),
        server.registry,
        None,
    )
    return server, router, serve_metrics


def test_series_keeps_what_the_server_and_its_router_expose() -> None:
    server, router, _ = _server_exposition()
    server.observe(np.array([1, 1, 0]), 0.003, classifier=True)  # one request of 3 rows
    server.observe(np.array([1]), 0.2, classifier=True)
    server.error("internal")
    server.error("not_ready")
    server.error("invalid_input")  # the client's fault: not the server's error rate
    router.requests.labels("shadow", "sent").inc(5)
    router.requests.labels("shadow", "failed").inc(1)
    router.latency.labels("shadow").observe(0.004)
    router.rows.labels("agree").inc(4)
    router.rows.labels("disagree").inc(1)
    text = server.render().decode()

    kept = series(text, "incumbent")
    assert (kept["ok"], kept["err"]) == (2, 2)
    assert (kept["class:1"], kept["class:0"]) == (3, 1)
    assert (kept["shadow:sent"], kept["shadow:failed"], kept["agree"], kept["disagree"]) == (5, 1, 4, 1)
    assert "shadow:dropped" not in kept and "canary:answered" not in kept  # zeros are omitted...
    assert kept["le:0.0025"] == 0 and kept["le:0.005"] == 1 and kept["le:+Inf"] == 2  # ...except buckets
    assert kept["shadow:le:0.005"] == 1 and "canary:le:0.005" not in kept
    candidate = series(text, "candidate")  # its predicted classes and its server-side latency only
    assert {k: v for k, v in candidate.items() if k.startswith("class:")} == {"class:1": 3, "class:0": 1}
    assert {k for k in candidate if not k.startswith("class:")} == {k for k in kept if k.startswith("le:")}
    assert candidate["le:0.005"] == 1 and candidate["le:+Inf"] == 2
    with pytest.raises(ValueError):
        series('ml_predictions_total{model_name="m" 1\n', "incumbent")


def test_increase_takes_the_new_value_after_a_counter_reset() -> None:
    assert increase({"ok": 10, "err": 2}, {"ok": 15, "err": 2}) == {"ok": 5}
    assert increase({"ok": 10}, {"ok": 4}) == {"ok": 4}  # restarted, then 4 more: as Prometheus' increase()
    assert increase({}, {"ok": 3, "le:0.1": 0}) == {"ok": 3, "le:0.1": 0}
    assert increase({"agree": 7}, {}) == {}  # a series gone after a restart: reset to 0, nothing new


def test_accumulate_counts_pods_appearing_restarting_and_disappearing() -> None:
    side = accumulate(SideCounters(), {"a": {"ok": 100}, "b": {"ok": 50}}, {"a", "b"}, set())
    assert side.increase == {} and side.pods == {"a": {"ok": 100}, "b": {"ok": 50}}  # the window's baseline
    side = accumulate(side, {"a": {"ok": 130}, "b": {"ok": 5}}, {"a", "b"}, set())
    assert side.increase == {"ok": 30 + 5}  # b restarted and counted 5 since
    # c started after the window began: everything it counted is in the window. b is gone: what it
    # counted stays. a's scrape failed: it keeps its last values and counts the gap on its next scrape.
    side = accumulate(side, {"c": {"ok": 7}}, {"a", "c"}, {"c"})
    assert side.increase == {"ok": 42} and set(side.pods) == {"a", "c"}
    side = accumulate(side, {"a": {"ok": 140}, "c": {"ok": 9}}, {"a", "c"}, {"c"})
    assert side.increase == {"ok": 42 + 10 + 2}
    # d existed before the window but was never scraped (unreachable until now): counted from now on.
    side = accumulate(side, {"d": {"ok": 500}}, {"a", "c", "d"}, {"c"})
    assert side.increase == {"ok": 54} and side.pods["d"] == {"ok": 500}


def test_histogram_quantile_interpolates_as_promql_does() -> None:
    buckets = {"0.005": 0, "0.01": 50, "0.025": 100, "+Inf": 100}
    # rank 95 falls in (0.01, 0.025]: 0.01 + 0.015 x (95 - 50) / (100 - 50)
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.0235)
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    assert histogram_quantile(0.95, {"0.01": 10, "+Inf": 10}) == pytest.approx(0.0095)  # first bucket: from 0
    assert histogram_quantile(0.95, {"0.01": 10, "0.1": 10, "+Inf": 40}) == 0.1  # in +Inf: highest finite bound
    assert histogram_quantile(0.95, {"0.01": 0, "+Inf": 0}) is None
    assert histogram_quantile(0.95, {"0.01": 3}) is None  # no +Inf bucket: NaN in PromQL


def test_histogram_quantile_agrees_with_prometheus_client_buckets() -> None:
    """Observations through prometheus-client's Histogram; the quantile lands in the right bucket."""
    registry = CollectorRegistry()
    hist = Histogram("t_seconds", "t", buckets=(0.001, 0.01, 0.1, 1.0), registry=registry)
    values = np.linspace(0.0005, 0.5, 1000)
    for v in values:
        hist.observe(float(v))
    text = generate_latest(registry).decode()
    buckets = {
        line.split('le="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("t_seconds_bucket")
    }
    p95 = histogram_quantile(0.95, buckets)
    assert p95 is not None and 0.1 < p95 <= 1.0 and p95 >= float(np.percentile(values, 95)) - 1e-9


def test_class_agreement_is_one_minus_total_variation_distance_with_a_noise_check() -> None:
    agree, compared, p_value = class_agreement({"1": 5, "0": 5}, {"1": 8, "0": 2})
    assert agree == pytest.approx(0.7) and compared == 10
    assert p_value is not None and p_value > 0.05  # 10 rows a side: that gap is within sampling noise
    agree, _, p_value = class_agreement({"1": 500, "0": 500}, {"1": 800, "0": 200})
    assert agree == pytest.approx(0.7) and p_value is not None and p_value < 1e-6
    assert class_agreement({"1": 1}, {"1": 1}) == (1.0, 1, 1.0)
    assert class_agreement({}, {"1": 3}) == (None, 0, None)


def _counters(incumbent: dict[str, float], candidate: dict[str, float] | None = None) -> WindowCounters:
    return WindowCounters(incumbent=SideCounters(increase=incumbent), candidate=SideCounters(increase=candidate or {}))


def test_shadow_numbers_come_from_the_router_on_the_incumbent_pods() -> None:
    inc = {"ok": 98, "err": 2, "le:0.01": 100, "le:+Inf": 100, "shadow:sent": 45, "shadow:failed": 5}
    inc |= {"shadow:le:0.02": 40, "shadow:le:+Inf": 45, "agree": 40, "disagree": 10}
    cand = {"le:0.005": 0, "le:0.01": 45, "le:+Inf": 45}  # the candidate's pods: its server-side latency
    n = window_numbers(_counters(inc, cand), "shadow", classifier=True, window_start=T0, time=T0)
    assert (n.incumbent.requests, n.incumbent.errors, n.incumbent.error_rate) == (100, 2, 0.02)
    assert (n.candidate.requests, n.candidate.errors, n.candidate.error_rate) == (50, 5, 0.1)
    assert n.incumbent.latency_p95_ms == pytest.approx(9.5)
    # Server-side against server-side (rank 42.75 of 45 in the 5-10 ms bucket); the router's round
    # trips apart (rank 42.75 of 45 is in +Inf: the bound below).
    assert n.candidate.latency_p95_ms == pytest.approx(9.75)
    assert n.candidate.round_trip_p95_ms == pytest.approx(20.0)
    assert (n.agreement, n.compared, n.agreement_p_value) == (0.8, 50, None)
    regression = window_numbers(_counters(inc), "shadow", classifier=False, window_start=T0, time=T0)
    assert regression.agreement is None and regression.compared == 0


def test_canary_agreement_compares_the_predicted_classes_of_both_sides_pods() -> None:
    inc = {"ok": 400, "class:1": 320, "class:0": 80, "canary:answered": 99, "canary:fallback": 1}
    cand = {"class:1": 50, "class:0": 50}
    n = window_numbers(_counters(inc, cand), "canary", classifier=True, window_start=T0, time=T0)
    assert (n.candidate.requests, n.candidate.errors) == (100, 1)
    assert n.agreement == pytest.approx(0.7) and n.compared == 100
    assert n.agreement_p_value is not None and n.agreement_p_value < 0.05


def test_fewer_requests_than_min_requests_waits_and_never_decides() -> None:
    spec = RolloutSpec.model_validate(
        {"strategy": "Shadow", "shadow": {"pauseSeconds": 10}, "analysis": {"minRequests": 20, "minAgreement": 0.9}}
    )
    inc = {"ok": 500, "shadow:sent": 19, "agree": 0, "disagree": 19}  # awful, but 19 < 20 candidate requests
    n = window_numbers(_counters(inc), "shadow", classifier=True, window_start=T0, time=T0)
    verdict = decide(spec, plan_steps(spec), 0, 3600.0, n)
    assert verdict.action == "Wait" and "19 candidate and 500 incumbent requests" in verdict.reason
    inc |= {"shadow:sent": 20, "disagree": 20}
    n = window_numbers(_counters(inc), "shadow", classifier=True, window_start=T0, time=T0)
    assert decide(spec, plan_steps(spec), 0, 3600.0, n).action == "Abort"


def test_dropped_shadow_copies_are_counted_named_while_waiting_and_warned_once_per_window() -> None:
    spec = RolloutSpec.model_validate(
        {"strategy": "Shadow", "shadow": {"pauseSeconds": 10}, "analysis": {"minRequests": 200}}
    )
    inc = {"ok": 500, "shadow:sent": 90, "shadow:dropped": 10, "agree": 90}
    first = window_numbers(_counters(inc), "shadow", classifier=True, window_start=T0, time=T0)
    assert first.shadow_dropped == 10
    # 10 of 100 copies: not more than 10 %, so no warning; the wait says how many were dropped.
    assert dropped_copies_warning(None, first) is None
    verdict = decide(spec, plan_steps(spec), 0, 3600.0, first)
    assert verdict.action == "Wait" and "10 of 100 shadow copies dropped (10.0%" in verdict.reason
    inc |= {"shadow:sent": 150, "shadow:dropped": 50}
    second = window_numbers(_counters(inc), "shadow", classifier=True, window_start=T0, time=T0)
    warning = dropped_copies_warning(first, second)
    assert warning is not None and warning.startswith("50 of 200 shadow copies in this window dropped (25.0%)")
    inc |= {"shadow:sent": 300, "shadow:dropped": 90}
    third = window_numbers(_counters(inc), "shadow", classifier=True, window_start=T0, time=T0)
    assert dropped_copies_warning(second, third) is None  # warned already in this window
    later = window_numbers(_counters(inc), "shadow", classifier=True, window_start=T0 + timedelta(hours=1), time=T0)
    assert dropped_copies_warning(third, later) is not None  # a new window (next step, restart of the rollout)
    few = {"ok": 50, "shadow:sent": 5, "shadow:dropped": 45}
    few_numbers = window_numbers(_counters(few), "shadow", classifier=True, window_start=T0, time=T0)
    assert dropped_copies_warning(None, few_numbers) is None  # 50 copies: too few to call it a share
    canary = window_numbers(_counters(few), "canary", classifier=True, window_start=T0, time=T0)
    assert canary.shadow_dropped == 0


def test_counters_survive_a_round_trip_through_status() -> None:
    """An operator restarted mid-window reads the counters back from status.rollout and goes on."""
    side = accumulate(SideCounters(), {"a": {"ok": 10, "le:0.1": 10, "le:+Inf": 10}}, {"a"}, set())
    side = accumulate(side, {"a": {"ok": 15, "le:0.1": 15, "le:+Inf": 15}}, {"a"}, set())
    status = RolloutStatus(phase="Shadow", stage="Production", spec_hash="x", counters=WindowCounters(incumbent=side))
    wire = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert wire["counters"]["incumbent"]["increase"] == {"ok": 5, "le:0.1": 5, "le:+Inf": 5}
    restored = RolloutStatus.model_validate(wire)
    assert restored.counters is not None
    after = accumulate(restored.counters.incumbent, {"a": {"ok": 20, "le:0.1": 20, "le:+Inf": 20}}, {"a"}, set())
    assert after.increase["ok"] == 10
