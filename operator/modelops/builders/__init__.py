"""Pure builders: custom resource (+ resolved state) → child manifest dicts.

No I/O, no kopf, no clock: the same inputs always give the same manifests, so the reconciler can
compare them with what it observes (:func:`desired_differs`) and tests can validate them offline.
See ``docs/children.md`` for what each child looks like and why.
"""

from .common import (
    ObjectRef,
    desired_differs,
    drift_cronjob_name,
    owner_reference,
    owner_references,
    serving_name,
    spec_hash,
    standard_labels,
    train_job_name,
)
from .monitoring import build_drift_cronjob
from .serving import (
    ServedVersion,
    ServingChildren,
    build_hpa,
    build_pdb,
    build_serving_children,
    build_serving_deployment,
    build_serving_service,
    service_url,
)
from .training import build_training_job

__all__ = [
    "ObjectRef",
    "ServedVersion",
    "ServingChildren",
    "build_drift_cronjob",
    "build_hpa",
    "build_pdb",
    "build_serving_children",
    "build_serving_deployment",
    "build_serving_service",
    "build_training_job",
    "desired_differs",
    "drift_cronjob_name",
    "owner_reference",
    "owner_references",
    "service_url",
    "serving_name",
    "spec_hash",
    "standard_labels",
    "train_job_name",
]
