"""Shared pieces of the API types: the camelCase base model, Kubernetes conditions, resources.

Every type here is a pydantic model whose JSON schema becomes part of a CRD's
``openAPIV3Schema`` (see :mod:`modelops.api.crdgen`), so field descriptions, defaults and
bounds written here are what ``kubectl explain`` shows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

GROUP = "ml.smarthr360.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

#: DNS-1123 label, the shape Kubernetes requires for names we derive child objects from.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: Semantic Versioning 2.0.0, the regular expression suggested at semver.org (without the "v").
SEMVER_PATTERN = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
#: A Kubernetes quantity (``500m``, ``1Gi``, ``2``), as apimachinery's resource.Quantity accepts.
QUANTITY_PATTERN = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"


#: A column or other short user-supplied name inside a list.
ColumnName = Annotated[str, Field(min_length=1, max_length=256)]


class ApiModel(BaseModel):
    """Base for every spec/status type: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """Return the JSON-ready dict with camelCase keys, omitting unset ``None`` fields."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """One observation of the object's state, in the shape of Kubernetes ``metav1.Condition``."""

    type: str = Field(
        description="Condition type in CamelCase, e.g. Trained, Registered, Promoted, Serving, Ready.",
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        description="A CamelCase programmatic reason for the condition's last transition.",
        max_length=1024,
        min_length=1,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
    )
    message: str = Field(default="", description="A human-readable explanation.", max_length=32768)
    last_transition_time: datetime = Field(
        description="When the status last changed (RFC 3339).",
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation the condition was computed for."
    )


def now() -> datetime:
    """Current UTC time, second precision, as Kubernetes timestamps use."""
    return datetime.now(UTC).replace(microsecond=0)


Quantity = Annotated[
    str,
    BeforeValidator(lambda v: str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v),
    Field(pattern=QUANTITY_PATTERN, max_length=64),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]


class ResourceList(ApiModel):
    """Amounts of compute resources (Kubernetes quantities)."""

    cpu: Quantity | None = Field(default=None, description="CPU, e.g. 500m or 2.")
    memory: Quantity | None = Field(default=None, description="Memory, e.g. 512Mi or 2Gi.")
    ephemeral_storage: Quantity | None = Field(
        default=None, alias="ephemeral-storage", description="Scratch disk, e.g. 1Gi."
    )


class Resources(ApiModel):
    """Container resource requests and limits (the shape of ``core/v1 ResourceRequirements``)."""

    requests: ResourceList | None = Field(default=None, description="Guaranteed resources.")
    limits: ResourceList | None = Field(default=None, description="Resource caps.")


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str = "",
    generation: int | None = None,
) -> bool:
    """Set a condition in place, keeping ``lastTransitionTime`` unless ``status`` changes.

    Returns True when the status flipped or the condition is new (a transition worth an Event).
    """
    for i, cond in enumerate(conditions):
        if cond.type == type_:
            changed = cond.status != status
            conditions[i] = Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=now() if changed else cond.last_transition_time,
                observed_generation=generation,
            )
            return changed
    conditions.append(
        Condition(
            type=type_,
            status=status,
            reason=reason,
            message=message,
            last_transition_time=now(),
            observed_generation=generation,
        )
    )
    return True


def get_condition(conditions: list[Condition], type_: str) -> Condition | None:
    """Return the condition of the given type, or None."""
    return next((c for c in conditions if c.type == type_), None)
