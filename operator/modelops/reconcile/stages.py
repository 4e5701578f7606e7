"""Stage resolution: which registered version serves each stage of a model. Pure, deterministic.

The decision is a function of the ModelVersion CRs alone (GUIDE §1), so that a Git revert is a
rollback and the operator never writes ``spec``:

* The candidates for a stage are the model's versions that request it (``spec.stage``), are
  registered, are not being deleted and hold no version conflict.
* They are folded in ascending semantic-version order: a candidate takes the stage when it
  passes its gate against the version holding the stage *so far in the fold* (``minValue``
  always; ``minImprovement`` against that holder). The holder at the end of the fold wins.
  So the highest version that beats what it would replace serves; one that does not is
  ``GateFailed``; a lower one that passed but was overtaken is ``Superseded``.
* ``policy: Manual`` candidates never take the stage; their decision is ``Recommended``
  (gate passed) or ``GateFailed``.
* ``requireStaging`` makes Production candidates that were never promoted to Staging fail
  with reason ``StagingRequired``.
* ``Archived`` is not a served stage: such versions are ``Released``.
* A ``blocked`` candidate (a rollout to this stage was aborted and neither its ``spec.rollout``
  nor its ``spec.stage`` changed since) stays out of the fold: ``GateFailed`` with that reason, so
  moving the holder away (a rollback) never hands the stage to the version the live numbers refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import semver

from ..api.modelversion import PromotionSpec
from ..registry.gate import evaluate_gate

STAGES = ("Development", "Staging", "Production")


@dataclass(frozen=True)
class Candidate:
    """What stage resolution needs to know about one ModelVersion.

    ``metrics`` are the evaluation metrics of its training run; ``staged_before`` tells whether
    it was ever promoted to Staging (from its promotion history).
    """

    name: str
    version: str
    stage: str
    registered: bool
    metrics: dict[str, float] = field(default_factory=dict)
    promotion: PromotionSpec = field(default_factory=PromotionSpec)
    staged_before: bool = False
    eligible: bool = True  # False while deleting or in a version conflict
    blocked: str | None = None  # why it may not take its stage (an aborted rollout), else None


@dataclass(frozen=True)
class Decision:
    """The outcome for one candidate: decision as in ``PromotionStatus.decision``."""

    name: str
    stage: str
    decision: str
    reason: str
    value: float | None = None
    compared_to: str | None = None
    compared_value: float | None = None


@dataclass(frozen=True)
class Resolution:
    """Winners per stage (candidate name or None) and a decision per candidate name."""

    winners: dict[str, str | None]
    decisions: dict[str, Decision]


def _semver_key(candidate: Candidate) -> semver.Version:
    return semver.Version.parse(candidate.version)


def _fold_stage(stage: str, candidates: Sequence[Candidate]) -> tuple[Candidate | None, dict[str, Decision]]:
    holder: Candidate | None = None
    decisions: dict[str, Decision] = {}
    for cand in sorted(candidates, key=_semver_key):
        spec = cand.promotion
        value = cand.metrics.get(spec.metric)
        incumbent_value = holder.metrics.get(spec.metric) if holder else None
        if stage == "Production" and spec.require_staging and not cand.staged_before:
            decisions[cand.name] = Decision(
                cand.name,
                stage,
                "GateFailed",
                f"promotion.requireStaging: {cand.version} was never promoted to Staging",
                value,
            )
            continue
        gate = evaluate_gate(
            value,
            metric=spec.metric,
            min_value=spec.min_value,
            incumbent_value=incumbent_value,
            incumbent_version=holder.version if holder else None,
            min_improvement=spec.min_improvement,
            mode=spec.improvement_mode,
            direction=spec.direction,
        )
        compared = (holder.version if holder else None, incumbent_value)
        if not gate.passed:
            decisions[cand.name] = Decision(cand.name, stage, "GateFailed", gate.reason, value, *compared)
        elif spec.policy == "Manual":
            decisions[cand.name] = Decision(
                cand.name, stage, "Recommended", f"{gate.reason}; policy is Manual, not promoted", value, *compared
            )
        else:
            if holder is not None:
                decisions[holder.name] = Decision(
                    holder.name,
                    stage,
                    "Superseded",
                    f"superseded by {cand.version} ({cand.name})",
                    holder.metrics.get(holder.promotion.metric),
                    cand.version,
                    value,
                )
            decisions[cand.name] = Decision(cand.name, stage, "Promoted", gate.reason, value, *compared)
            holder = cand
    # A candidate that failed against an earlier holder that was later superseded still reads
    # GateFailed with the numbers it was compared to: that is the comparison that decided it.
    return holder, decisions


def resolve(candidates: Iterable[Candidate]) -> Resolution:
    """Decide winners for every stage and a decision for every candidate.

    Candidates that are not registered get ``Pending``; ineligible ones ``NotRequested``;
    ``Archived`` ones ``Released``; blocked ones ``GateFailed`` with the block as the reason.
    """
    winners: dict[str, str | None] = {}
    decisions: dict[str, Decision] = {}
    pool = list(candidates)
    for cand in pool:
        if not cand.eligible:
            decisions[cand.name] = Decision(cand.name, cand.stage, "NotRequested", "not eligible for promotion")
        elif not cand.registered:
            decisions[cand.name] = Decision(cand.name, cand.stage, "Pending", "waiting for registration")
        elif cand.stage == "Archived":
            decisions[cand.name] = Decision(cand.name, cand.stage, "Released", "spec.stage is Archived")
        elif cand.blocked is not None:
            decisions[cand.name] = Decision(
                cand.name, cand.stage, "GateFailed", cand.blocked, cand.metrics.get(cand.promotion.metric)
            )
    for stage in STAGES:
        members = [c for c in pool if c.stage == stage and c.registered and c.eligible and c.blocked is None]
        holder, stage_decisions = _fold_stage(stage, members)
        winners[stage] = holder.name if holder else None
        decisions.update(stage_decisions)
    return Resolution(winners, decisions)
