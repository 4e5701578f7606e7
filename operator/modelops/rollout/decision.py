"""The rollout decision rules, pure: analysis numbers in, a decision out (docs/rollout.md, "Decision rules").

A rollout is a list of :class:`Step` (the shadow window, then each canary step). In each step's
window :func:`decide` returns one of

* ``Abort`` - the candidate's pods crash-loop or refuse the model, or a bound failed with
  ``onFailure: Abort``;
* ``Pause`` - a bound failed with ``onFailure: Pause`` (held until the rollout spec changes);
* ``Wait`` - the window has not started (router setting not in effect, candidate not ready), its
  pause has not elapsed, or either side has fewer than ``minRequests`` requests (never decided on fewer);
* ``NextStep`` / ``Promote`` - the pause elapsed, both sides have ``minRequests`` and every bound held
  (with ``maxDriftShareIncrease`` set: after the window's drift check completed within its bound).

Bounds are checked as soon as both sides have ``minRequests`` requests, so a bad candidate is
stopped without waiting for the end of the pause (canary agreement at a stricter significance level
until then, :data:`INTERIM_SIGNIFICANCE`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..api.modelversion import (
    RolloutAction,
    RolloutAnalysis,
    RolloutAnalysisStatus,
    RolloutDriftStatus,
    RolloutShadow,
    RolloutSpec,
)

StepKind = Literal["shadow", "canary"]
#: Canary agreement fails only when the two sides' class counts differ at this significance level.
SIGNIFICANCE = 0.05
#: ... and, before the window's pause has elapsed, only at this stricter level: the numbers are looked at
#: every pass, and each look at 0.05 would add its own chance of aborting a good candidate. A fixed
#: strict level for interim looks and the nominal one for the final look is the Haybittle-Peto boundary
#: of group-sequential tests (Haybittle 1971, Peto et al. 1976).
INTERIM_SIGNIFICANCE = 0.001
#: A ``ShadowCopiesDropped`` warning when more than this share of a window's shadow copies were dropped ...
DROPPED_WARNING_SHARE = 0.1
#: ... out of at least this many copies (a share of a handful is noise).
DROPPED_WARNING_MIN_COPIES = 100


@dataclass(frozen=True)
class Step:
    """One analysis window: ``kind``, the canary ``weight`` (percent, 0 for shadow), the shadow
    ``sample_rate`` (None for canary) and the window's ``pause_seconds``."""

    kind: StepKind
    weight: int
    sample_rate: float | None
    pause_seconds: int

    def describe(self) -> str:
        """``shadow 100%`` or ``canary 10%``."""
        if self.kind == "shadow":
            return f"shadow {100 * (self.sample_rate or 0):g}%"
        return f"canary {self.weight}%"


def plan_steps(spec: RolloutSpec) -> list[Step]:
    """The windows of a rollout, in order: the shadow window (``Shadow``: ``spec.shadow`` or its
    defaults; ``Canary``: only when ``spec.shadow`` is set), then the canary steps. Empty for Immediate."""
    if spec.strategy == "Immediate":
        return []
    shadow = spec.shadow or (RolloutShadow() if spec.strategy == "Shadow" else None)
    steps = [Step("shadow", 0, shadow.sample_rate, shadow.pause_seconds)] if shadow is not None else []
    if spec.strategy == "Canary":
        steps += [Step("canary", s.weight, None, s.pause_seconds) for s in spec.steps or []]
    return steps


@dataclass(frozen=True)
class Verdict:
    """A decision: ``action``, a one-line ``reason`` with the numbers, the ``failed`` bounds;
    ``drift_check``: the window waits for its drift check, which the caller starts or reads."""

    action: RolloutAction
    reason: str
    failed: list[str] = field(default_factory=list)
    drift_check: bool = False


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def failed_bounds(
    analysis: RolloutAnalysis, numbers: RolloutAnalysisStatus, significance: float = SIGNIFICANCE, *, final: bool = True
) -> list[str]:
    """The bounds of ``analysis`` the window's ``numbers`` break, each with its numbers.

    ``final``: the look at the end of the window's pause; before it (an interim look) the latency
    bound is not checked: a p95 over the first requests of a window is noise (a good candidate was
    aborted 9 s into a 600 s window on 73 ms vs 21 ms), so latency is judged over the whole window.

    * error rate: candidate - incumbent > ``maxErrorRateIncrease``;
    * latency (final look only): candidate p95 > ``maxLatencyP95Ratio`` x incumbent p95 + ``latencySlackMs``;
    * agreement: below ``minAgreement`` (only when rows could be compared); in canary also only
      when the class counts differ beyond sampling noise (chi-square p-value below ``significance``:
      :data:`SIGNIFICANCE`, or :data:`INTERIM_SIGNIFICANCE` before the pause has elapsed);
    * accuracy: candidate < incumbent - ``maxAccuracyDrop`` (only when both sides have ``minFeedback``
      labelled rows).
    """
    cand, inc = numbers.candidate, numbers.incumbent
    failed = []
    cand_err, inc_err = cand.error_rate or 0.0, inc.error_rate or 0.0
    if cand_err - inc_err > analysis.max_error_rate_increase:
        failed.append(
            f"error rate {_pct(cand_err)} vs incumbent {_pct(inc_err)} "
            f"(at most +{_pct(analysis.max_error_rate_increase)})"
        )
    if final and cand.latency_p95_ms is not None and inc.latency_p95_ms is not None:
        limit = analysis.max_latency_p95_ratio * inc.latency_p95_ms + analysis.latency_slack_ms
        if cand.latency_p95_ms > limit:
            failed.append(
                f"p95 latency {cand.latency_p95_ms:.1f} ms vs incumbent {inc.latency_p95_ms:.1f} ms "
                f"(at most {limit:.1f} ms)"
            )
    if analysis.min_agreement is not None and numbers.agreement is not None and numbers.compared > 0:
        p_value = numbers.agreement_p_value
        if numbers.agreement < analysis.min_agreement and (p_value is None or p_value < significance):
            noise = "" if p_value is None else f", chi-square p={p_value:.2g}"
            failed.append(
                f"agreement {_pct(numbers.agreement)} over {numbers.compared} rows "
                f"(at least {_pct(analysis.min_agreement)}{noise})"
            )
    if (
        analysis.max_accuracy_drop is not None
        and cand.accuracy is not None
        and inc.accuracy is not None
        and cand.labelled >= analysis.min_feedback
        and inc.labelled >= analysis.min_feedback
        and cand.accuracy < inc.accuracy - analysis.max_accuracy_drop
    ):
        failed.append(
            f"feedback accuracy {_pct(cand.accuracy)} ({cand.labelled} labels) vs incumbent "
            f"{_pct(inc.accuracy)} ({inc.labelled} labels) (at most -{_pct(analysis.max_accuracy_drop)})"
        )
    return failed


def failed_drift(analysis: RolloutAnalysis, drift: RolloutDriftStatus) -> list[str]:
    """The drift bound, once both sides' checks completed: candidate drift share - incumbent drift
    share > ``maxDriftShareIncrease`` fails (each side's rows in the window against its own training
    reference sample, so drift of the live traffic that both see does not count against the candidate)."""
    limit = analysis.max_drift_share_increase
    cand, inc = drift.candidate_share, drift.incumbent_share
    if limit is None or drift.state != "Completed" or cand is None or inc is None or cand - inc <= limit:
        return []
    return [f"input drift share {_pct(cand)} vs incumbent {_pct(inc)} (at most +{_pct(limit)}){_drifted(drift)}"]


def _drifted(drift: RolloutDriftStatus) -> str:
    return f"; {drift.message}" if drift.message else ""


def summary(numbers: RolloutAnalysisStatus) -> str:
    """The window's numbers in one line (for reasons and Events)."""
    cand, inc = numbers.candidate, numbers.incumbent
    parts = [
        f"requests {cand.requests} vs {inc.requests}",
        f"errors {_pct(cand.error_rate)} vs {_pct(inc.error_rate)}",
    ]
    if cand.latency_p95_ms is not None and inc.latency_p95_ms is not None:
        parts.append(f"p95 {cand.latency_p95_ms:.1f} vs {inc.latency_p95_ms:.1f} ms")
    if numbers.agreement is not None:
        parts.append(f"agreement {_pct(numbers.agreement)} over {numbers.compared} predicted rows")
    if cand.accuracy is not None or inc.accuracy is not None:
        parts.append(f"accuracy {_pct(cand.accuracy)} vs {_pct(inc.accuracy)}")
    return "candidate vs incumbent: " + ", ".join(parts) + _dropped(numbers)


def _copies(numbers: RolloutAnalysisStatus) -> tuple[int, int]:
    """``(dropped, copies)``: the window's shadow copies dropped, of all it copied (dropped + sent + failed)."""
    return numbers.shadow_dropped, numbers.shadow_dropped + numbers.candidate.requests


def _dropped(numbers: RolloutAnalysisStatus) -> str:
    """``; N of M shadow copies dropped (...)`` when the window has dropped copies, else empty."""
    dropped, copies = _copies(numbers)
    if not dropped:
        return ""
    return (
        f"; {dropped} of {copies} shadow copies dropped ({_pct(dropped / copies)}: the incumbent's pods "
        "had no CPU or queue room to send them, or their shadow sender was restarting)"
    )


def dropped_copies_warning(previous: RolloutAnalysisStatus | None, current: RolloutAnalysisStatus) -> str | None:
    """The message of a ``ShadowCopiesDropped`` warning when more than :data:`DROPPED_WARNING_SHARE`
    of the window's shadow copies (at least :data:`DROPPED_WARNING_MIN_COPIES`) were dropped and the
    window was not warned yet, else None. Once per window: ``previous`` (the last analysis in the
    status, None at a window's start) says whether this window was warned; ``current`` is marked
    (``shadow_dropped_warned``) when it was or is now, since the share can dip under the threshold
    and cross it again.
    """
    current.shadow_dropped_warned = (
        previous is not None and previous.window_start == current.window_start and previous.shadow_dropped_warned
    )
    dropped, copies = _copies(current)
    over = copies >= DROPPED_WARNING_MIN_COPIES and dropped > DROPPED_WARNING_SHARE * copies
    if current.shadow_dropped_warned or not over:
        return None
    current.shadow_dropped_warned = True
    return (
        f"{dropped} of {copies} shadow copies in this window dropped ({_pct(dropped / copies)}): the "
        "incumbent's pods have no CPU or queue room to send them (or their shadow sender restarts: see "
        "the pods' logs), so the analysis waits longer for minRequests; give the pods CPU to spare or "
        "lower shadow.sampleRate"
    )


def decide(
    spec: RolloutSpec,
    steps: list[Step],
    index: int,
    elapsed_seconds: float | None,
    numbers: RolloutAnalysisStatus | None,
    crash: str | None = None,
    drift: RolloutDriftStatus | None = None,
) -> Verdict:
    """Decide step ``index`` of ``steps`` (see the module docstring for the rules, in order).

    Args:
        elapsed_seconds: seconds since the window started; None when it has not started.
        numbers: the window's analysis (None when not read yet).
        crash: why the candidate's pods cannot serve (crash loop, refusal), if they cannot.
        drift: the window's drift check (``analysis.maxDriftShareIncrease`` set), None before it
            started. It runs once the window would otherwise pass (``Verdict.drift_check``: start or
            read it); a failed check pauses the rollout, one without enough data is not applied.
    """
    step = steps[index]
    where = f"step {index + 1}/{len(steps)} ({step.describe()})"
    if crash is not None:
        return Verdict("Abort", f"{where}: the candidate cannot serve: {crash}", [crash])
    if elapsed_seconds is None or numbers is None:
        return Verdict("Wait", f"{where}: waiting for the candidate to be ready and the router setting in effect")
    analysis = spec.analysis
    cand, inc = numbers.candidate, numbers.incumbent
    enough = cand.requests >= analysis.min_requests and inc.requests >= analysis.min_requests
    if enough:
        final = elapsed_seconds >= step.pause_seconds
        failed = failed_bounds(analysis, numbers, SIGNIFICANCE if final else INTERIM_SIGNIFICANCE, final=final)
        if failed:
            action: RolloutAction = "Abort" if spec.on_failure == "Abort" else "Pause"
            return Verdict(action, f"{where}: {'; '.join(failed)}", failed)
    if elapsed_seconds < step.pause_seconds:
        return Verdict("Wait", f"{where}: {elapsed_seconds:.0f}/{step.pause_seconds} s; {summary(numbers)}")
    if not enough:
        return Verdict(
            "Wait",
            f"{where}: {cand.requests} candidate and {inc.requests} incumbent requests, "
            f"{analysis.min_requests} needed on each side before deciding{_dropped(numbers)}",
        )
    passed = f"{where} passed: {summary(numbers)}"
    if analysis.max_drift_share_increase is not None:
        if drift is None or drift.state == "Running":
            return Verdict(
                "Wait", f"{where}: drift check of the window's inputs running; {summary(numbers)}", drift_check=True
            )
        if drift.state == "Failed":
            return Verdict("Pause", f"{where}: the drift check failed: {drift.message}", [drift.message])
        failed = failed_drift(analysis, drift)
        if failed:
            action = "Abort" if spec.on_failure == "Abort" else "Pause"
            return Verdict(action, f"{where}: {'; '.join(failed)}", failed)
        if drift.state == "NotChecked":
            passed += f"; input drift not checked: {drift.message}"
        else:
            passed += f"; input drift share {_pct(drift.candidate_share)} vs {_pct(drift.incumbent_share)}"
    action = "Promote" if index + 1 >= len(steps) else "NextStep"
    return Verdict(action, passed)
