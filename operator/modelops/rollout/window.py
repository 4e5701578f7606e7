"""The numbers of a rollout window from the serving pods' own ``/metrics`` (pure; docs/rollout.md,
"Where the numbers come from").

Each pass the operator scrapes every pod of the incumbent's Deployment and of the candidate's
(:mod:`modelops.reconcile.rollout` does the I/O), keeps the few series the analysis needs
(:func:`series`), and folds the scrape into the window's counters (:func:`accumulate`): per pod and
series the increase since the previous scrape, a value lower than before being a counter reset (the
pod's server restarted) whose new value is the increase, as Prometheus' ``increase()`` treats resets.
The state (last values per pod, the window's increase per side) lives in ``status.rollout.counters``,
so an operator restarted mid-window continues the same sums. :func:`window_numbers` turns the
increases into the analysis (requests, errors, p95 latency, agreement).

Series kept (keys of the state; values of zero are omitted, except histogram buckets):

* incumbent pods: ``ok`` (successful infer requests, the latency histogram's count), ``err``
  (requests failed by the server, :data:`~modelops.contract.PROM_SERVER_ERROR_TYPES`), ``le:<bound>``
  (latency buckets), ``class:<label>`` (predicted rows by class); the router's ``<route>:<outcome>``
  (requests sent to the candidate), ``<route>:le:<bound>`` (the candidate's round-trip buckets),
  ``agree``/``disagree`` (shadowed rows);
* candidate pods: ``class:<label>`` (its predicted rows by class, for canary agreement) and ``le:<bound>``
  (its server-side latency buckets, for the latency bound).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Literal

from prometheus_client.parser import text_string_to_metric_families

from ..api.modelversion import RolloutAnalysisStatus, SideCounters, WindowCounters, WindowNumbers
from ..contract import (
    PROM_ERRORS,
    PROM_LATENCY,
    PROM_PREDICTIONS,
    PROM_ROUTER_LATENCY,
    PROM_ROUTER_REQUESTS,
    PROM_ROUTER_SHADOW_ROWS,
    PROM_SERVER_ERROR_TYPES,
)

Side = Literal["incumbent", "candidate"]
Route = Literal["shadow", "canary"]
#: Router outcomes of a candidate request that failed (no answer in time, non-2xx), per route.
FAILED_OUTCOME = {"shadow": "failed", "canary": "fallback"}
#: Router outcomes of a candidate request that answered, per route.
ANSWERED_OUTCOME = {"shadow": "sent", "canary": "answered"}
#: The quantile compared by the latency bound.
LATENCY_QUANTILE = 0.95


def _family(name: str) -> str:
    """The family name prometheus-client's parser gives a metric (counters lose ``_total``)."""
    return name[: -len("_total")] if name.endswith("_total") else name


def series(text: str, side: Side) -> dict[str, float]:
    """The series the analysis needs from one pod's exposition text (see the module docstring for the
    keys), summed over the labels not kept (model name and version, worker processes).

    Parsed with ``prometheus_client.parser.text_string_to_metric_families``. Raises ValueError when the
    text is not the Prometheus text format.
    """
    out: dict[str, float] = {}

    def add(key: str, value: float) -> None:
        out[key] = out.get(key, 0.0) + value

    for family in text_string_to_metric_families(text):
        name = family.name
        for s in family.samples:
            labels = s.labels
            if name == _family(PROM_PREDICTIONS) and s.name == PROM_PREDICTIONS:
                add(f"class:{labels.get('prediction_class', '')}", s.value)
            elif name == PROM_LATENCY and s.name == f"{PROM_LATENCY}_bucket":
                add(f"le:{labels['le']}", s.value)
            elif side == "candidate":
                continue
            elif name == PROM_LATENCY and s.name == f"{PROM_LATENCY}_count":
                add("ok", s.value)
            elif name == _family(PROM_ERRORS) and s.name == PROM_ERRORS:
                if labels.get("error_type") in PROM_SERVER_ERROR_TYPES:
                    add("err", s.value)
            elif name == _family(PROM_ROUTER_REQUESTS) and s.name == PROM_ROUTER_REQUESTS:
                add(f"{labels.get('route')}:{labels.get('outcome')}", s.value)
            elif name == PROM_ROUTER_LATENCY and s.name == f"{PROM_ROUTER_LATENCY}_bucket":
                add(f"{labels.get('route')}:le:{labels['le']}", s.value)
            elif name == _family(PROM_ROUTER_SHADOW_ROWS) and s.name == PROM_ROUTER_SHADOW_ROWS:
                add(str(labels.get("result")), s.value)
    return {k: v for k, v in out.items() if v or _bucket(k)}


def _bucket(key: str) -> bool:
    """Whether a key is a histogram bucket: kept at zero too, since quantiles interpolate from the
    bound below (an omitted zero bucket would move it)."""
    return key.startswith("le:") or ":le:" in key


def increase(previous: Mapping[str, float], current: Mapping[str, float]) -> dict[str, float]:
    """Per series, how much a pod's counters grew from ``previous`` to ``current`` (missing = 0).

    A value lower than before is a counter reset (the pod's server restarted): its new value is the
    increase, as in Prometheus' ``increase()`` (promql/functions.go, extrapolatedRate: "counter
    reset" adds the previous value back). Zero increases are omitted, except histogram buckets.
    """
    out = {}
    for key in set(previous) | set(current):
        before, after = previous.get(key, 0.0), current.get(key, 0.0)
        grown = after - before if after >= before else after
        if grown or _bucket(key):
            out[key] = grown
    return out


def accumulate(
    state: SideCounters,
    scraped: Mapping[str, Mapping[str, float]],
    present: Collection[str],
    new: Collection[str],
) -> SideCounters:
    """Fold one scrape of a side's pods into its window counters; returns the new state.

    Args:
        state: the side's counters so far (empty at the window's start: the first scrape is the
            window's baseline).
        scraped: ``{pod name: series}`` of the pods scraped now (:func:`series`).
        present: names of the side's pods that exist now; a pod no longer present is dropped from the
            state, and what it counted up to its last scrape stays in the window's increase.
        new: names of pods created after the window started: a pod first seen that is new counted
            everything inside the window (its baseline is zero); one first seen that is not (its
            scrape failed until now) counts from this scrape on.

    A pod present but not scraped now (its scrape failed) keeps its last values, so its next
    successful scrape counts what it did meanwhile.
    """
    pods = {name: dict(values) for name, values in state.pods.items() if name in present}
    total = dict(state.increase)
    for name, values in scraped.items():
        before = pods.get(name)
        if before is None:
            before = {} if name in new else dict(values)
        for key, grown in increase(before, values).items():
            total[key] = total.get(key, 0.0) + grown
        pods[name] = dict(values)
    return SideCounters(pods=pods, increase=total)


def histogram_quantile(q: float, buckets: Mapping[str, float]) -> float | None:
    """The ``q``-quantile of a histogram from its cumulative bucket counts ``{upper bound: count}``
    (``+Inf`` included), as PromQL's ``histogram_quantile`` computes it (promql/quantile.go,
    bucketQuantile): the bucket holding rank ``q * total`` is found and the value interpolated
    linearly within it (from 0 for the first bucket); a rank in the ``+Inf`` bucket returns the highest
    finite bound. Counts are made monotonic first (as ensureMonotonic does). None when empty.
    """
    bounds = sorted((float(le), count) for le, count in buckets.items())
    if not bounds or not math.isinf(bounds[-1][0]):
        return None
    running, monotonic = 0.0, []
    for bound, count in bounds:
        running = max(running, count)
        monotonic.append((bound, running))
    total = monotonic[-1][1]
    if total <= 0:
        return None
    rank = q * total
    index = next(i for i, (_, count) in enumerate(monotonic) if count >= rank)
    if index == len(monotonic) - 1:
        return monotonic[-2][0] if len(monotonic) > 1 else None
    end, count = monotonic[index]
    start, below = monotonic[index - 1] if index > 0 else (0.0, 0.0)
    if index == 0 and end <= 0:
        return end
    return start + (end - start) * ((rank - below) / (count - below))


def _buckets(increase_: Mapping[str, float], prefix: str) -> dict[str, float]:
    """The cumulative buckets ``{bound: count}`` under ``<prefix>le:`` (a missing bound has count 0)."""
    marker = f"{prefix}le:"
    return {key[len(marker) :]: value for key, value in increase_.items() if key.startswith(marker)}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1000.0 * seconds


def class_counts(increase_: Mapping[str, float]) -> dict[str, float]:
    """Predicted rows by class label from a side's increases."""
    return {key[len("class:") :]: value for key, value in increase_.items() if key.startswith("class:")}


def class_agreement(
    candidate: Mapping[str, float], incumbent: Mapping[str, float]
) -> tuple[float | None, int, float | None]:
    """``(agreement, rows compared, p-value)`` of two predicted-class distributions (canary: the sides
    answer different requests): ``1 - total variation distance`` of the two distributions, over the
    candidate's rows, and the p-value of a chi-square test of homogeneity of the two sides' counts
    (``scipy.stats.chi2_contingency``; 1.0 when a single class was predicted), so that a gap that
    sampling noise explains is not taken for a disagreement. ``(None, 0, None)`` when a side is empty.
    """
    n_c, n_i = sum(candidate.values()), sum(incumbent.values())
    if n_c <= 0 or n_i <= 0:
        return None, 0, None
    labels = sorted(set(candidate) | set(incumbent))
    distance = 0.5 * sum(abs(candidate.get(k, 0.0) / n_c - incumbent.get(k, 0.0) / n_i) for k in labels)
    p_value = 1.0
    if len(labels) > 1:
        # Imported here: scipy is part of the data stack the operator loads only for an analysis (lean.py).
        from scipy.stats import chi2_contingency

        table = [[candidate.get(k, 0.0) for k in labels], [incumbent.get(k, 0.0) for k in labels]]
        p_value = float(chi2_contingency(table).pvalue)
    return 1.0 - distance, int(n_c), p_value


def _side(
    requests: float, errors: float, p95_seconds: float | None, round_trip_p95_seconds: float | None = None
) -> WindowNumbers:
    n, e = round(requests), round(errors)
    return WindowNumbers(
        requests=n,
        errors=e,
        error_rate=e / n if n else None,
        latency_p95_ms=_ms(p95_seconds),
        round_trip_p95_ms=_ms(round_trip_p95_seconds),
    )


def window_numbers(
    counters: WindowCounters,
    route: Route,
    *,
    classifier: bool,
    window_start: datetime,
    time: datetime,
) -> RolloutAnalysisStatus:
    """The analysis of a window from its counters (see docs/rollout.md for each number's source).

    * incumbent: requests = successful + server-failed requests of its own pods (those the candidate
      answered in canary are not its own), errors = server-failed, p95 of its server-side latency;
    * candidate: the router's view on the incumbent's pods for ``route``: requests = answered +
      failed, errors = failed (no answer in time, non-2xx); p95 of its own pods' server-side latency
      (measured as the incumbent's, so the two compare the models, not the extra hop), and the p95 of
      the router's round trips to it apart (``round_trip_p95_ms``: what a canary client waited for);
    * agreement (classifiers): shadow, ``agree / (agree + disagree)`` of the shadowed rows;
      canary, :func:`class_agreement` of the two sides' predicted-class counts;
    * shadow copies the incumbent's pods dropped (router outcome ``dropped``): counted for neither side.
    """
    inc, cand = counters.incumbent.increase, counters.candidate.increase
    ok, failed = inc.get(f"{route}:{ANSWERED_OUTCOME[route]}", 0.0), inc.get(f"{route}:{FAILED_OUTCOME[route]}", 0.0)
    agreement: float | None = None
    compared, p_value = 0, None
    if classifier and route == "shadow":
        agree, disagree = inc.get("agree", 0.0), inc.get("disagree", 0.0)
        compared = round(agree + disagree)
        agreement = agree / (agree + disagree) if compared else None
    elif classifier:
        agreement, compared, p_value = class_agreement(class_counts(cand), class_counts(inc))
    return RolloutAnalysisStatus(
        window_start=window_start,
        time=time,
        candidate=_side(
            ok + failed,
            failed,
            histogram_quantile(LATENCY_QUANTILE, _buckets(cand, "")),
            histogram_quantile(LATENCY_QUANTILE, _buckets(inc, f"{route}:")),
        ),
        incumbent=_side(
            inc.get("ok", 0.0) + inc.get("err", 0.0),
            inc.get("err", 0.0),
            histogram_quantile(LATENCY_QUANTILE, _buckets(inc, "")),
        ),
        compared=compared,
        agreement=agreement,
        agreement_p_value=p_value,
        shadow_dropped=round(inc.get("shadow:dropped", 0.0)) if route == "shadow" else 0,
    )
