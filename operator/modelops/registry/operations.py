"""Idempotent, synchronous MLflow operations the operator (and the library) are built on.

Every function takes an explicit :class:`mlflow.MlflowClient`, does blocking I/O (the operator
runs them in ``asyncio.to_thread``) and can be repeated safely: a retry after a crash or a
restart converges on the same registry state instead of creating duplicates.

Errors, for every function here:

* :class:`~modelops.registry.errors.RegistryUnavailable` when MLflow cannot be reached;
* :class:`~modelops.registry.errors.ModelOwnedElsewhere` from :func:`ensure_registered_model`;
* :class:`~modelops.registry.errors.LoggedModelNotFound` from :func:`register_run_model`;
* ``ValueError`` for a name that cannot be used in an MLflow filter string (contains ``'``);
* any other ``MlflowException`` (e.g. permission denied) unchanged.

"Not found" answers are not errors: getters return ``None`` or an empty list and deletions
count as done.
"""

from __future__ import annotations

from collections.abc import Mapping

from mlflow import MlflowClient
from mlflow.entities import LoggedModel, Run
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException

from ..api.modelversion import STAGE_ALIASES
from ..contract import (
    ARTIFACT_MODEL,
    TAG_FAILURE,
    TAG_NAMESPACE,
    TAG_SEMVER,
    TAG_STAGE,
    TAG_STAGE_WRITTEN,
    TAG_UID,
)
from .errors import (
    LoggedModelNotFound,
    ModelOwnedElsewhere,
    ModelVersionNotFound,
    is_not_found,
    translate_errors,
)
from .semantic import max_semver

_ALREADY_EXISTS = frozenset({"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"})


def _quote(value: str, what: str) -> str:
    """``value`` as a single-quoted MLflow filter literal; ``ValueError`` if it contains a quote."""
    if "'" in value:
        raise ValueError(f"{what} {value!r} must not contain a single quote")
    return f"'{value}'"


def _version_number(version: ModelVersion) -> int:
    """A registry version as an int (the SQL store returns ints, the REST store strings)."""
    return int(version.version)


def experiment_id_of(client: MlflowClient, name: str) -> str | None:
    """The id of experiment ``name``, or None when there is no such experiment."""
    with translate_errors("experiment_id_of"):
        exp = client.get_experiment_by_name(name)
    return str(exp.experiment_id) if exp is not None else None


def find_run_in_experiment(
    client: MlflowClient, experiment_id: str, uid: str, *, status: str | None = None
) -> Run | None:
    """The newest run in experiment ``experiment_id`` tagged ``modelops.uid = uid``, or None.

    Args:
        experiment_id: the experiment's id (see :func:`experiment_id_of`).
        uid: the owning custom resource's uid (``TAG_UID``).
        status: only runs with this status (``FINISHED``, ``FAILED``, ``RUNNING``...), or any.

    Returns:
        The run with the latest start time (a Job retried by Kubernetes makes one run per attempt).
    """
    flt = f"tags.`{TAG_UID}` = {_quote(uid, 'uid')}"
    if status:
        flt += f" and attributes.status = {_quote(status, 'status')}"
    with translate_errors("find_run_by_uid"):
        runs = client.search_runs(
            [experiment_id], filter_string=flt, order_by=["attributes.start_time DESC"], max_results=1
        )
    return runs[0] if runs else None


def runs_of(client: MlflowClient, experiment_id: str, uid: str) -> list[Run]:
    """Every run in experiment ``experiment_id`` tagged ``modelops.uid = uid``, newest first (one search).

    A training Job makes one run per attempt, so this is a handful of runs.
    """
    flt = f"tags.`{TAG_UID}` = {_quote(uid, 'uid')}"
    with translate_errors("runs_of"):
        return list(client.search_runs([experiment_id], filter_string=flt, order_by=["attributes.start_time DESC"]))


def end_runs(client: MlflowClient, runs: list[Run], status: str, reason: str) -> list[str]:
    """End those of ``runs`` still ``RUNNING`` as ``status`` (``KILLED``/``FAILED``), each tagged
    ``modelops.failure_reason = reason``. Returns the ids of the runs ended."""
    running = [run for run in runs if run.info.status == "RUNNING"]
    with translate_errors("end_runs"):
        for run in running:
            client.set_tag(run.info.run_id, TAG_FAILURE, reason)
            client.set_terminated(run.info.run_id, status=status)
    return [run.info.run_id for run in running]


def end_running_runs(client: MlflowClient, experiment_id: str, uid: str, status: str, reason: str) -> list[str]:
    """End every ``RUNNING`` run tagged ``modelops.uid = uid`` as ``status`` (``KILLED``/``FAILED``).

    For attempts known to have ended (their Job finished) whose process could not end its run
    itself (SIGKILL, OOM kill, node loss). Each gets ``modelops.failure_reason = reason``.
    Returns the ids of the runs ended (empty when none was left RUNNING).
    """
    flt = f"tags.`{TAG_UID}` = {_quote(uid, 'uid')} and attributes.status = 'RUNNING'"
    with translate_errors("end_running_runs"):
        runs = client.search_runs([experiment_id], filter_string=flt)
    return end_runs(client, list(runs), status, reason)


def find_run_by_uid(client: MlflowClient, experiment: str, uid: str, *, status: str | None = None) -> Run | None:
    """The newest run in experiment ``experiment`` (a name) tagged ``modelops.uid = uid``, or None.

    A missing experiment means no run. See :func:`find_run_in_experiment` for the arguments.
    """
    experiment_id = experiment_id_of(client, experiment)
    return find_run_in_experiment(client, experiment_id, uid, status=status) if experiment_id else None


def get_run(client: MlflowClient, run_id: str) -> Run:
    """The run ``run_id`` (raises ``MlflowException`` RESOURCE_DOES_NOT_EXIST when absent)."""
    with translate_errors("get_run"):
        return client.get_run(run_id)


def find_versions_by_run(client: MlflowClient, model: str, run_id: str) -> list[ModelVersion]:
    """Versions of registered model ``model`` created from run ``run_id``, oldest first (empty if none)."""
    with translate_errors("find_versions_by_run"):
        found = client.search_model_versions(
            f"name = {_quote(model, 'model name')} and run_id = {_quote(run_id, 'run id')}"
        )
    return sorted(found, key=_version_number)


def logged_model_of_run(client: MlflowClient, run: Run, name: str = ARTIFACT_MODEL) -> LoggedModel:
    """The logged model named ``name`` that ``run`` produced (the latest step when there are several).

    One search filtered on ``name`` and ``source_run_id`` (both searchable attributes of logged
    models in MLflow 3), so the cost does not grow with the experiment's other runs.

    Raises :class:`LoggedModelNotFound` when the run logged no such model.
    """
    with translate_errors("logged_model_of_run"):
        candidates: list[LoggedModel] = []
        page_token: str | None = None
        while True:
            page = client.search_logged_models(
                experiment_ids=[run.info.experiment_id],
                filter_string=(
                    f"name = {_quote(name, 'model name')} AND source_run_id = {_quote(run.info.run_id, 'run id')}"
                ),
                page_token=page_token,
            )
            candidates.extend(m for m in page if m.source_run_id == run.info.run_id)
            page_token = page.token
            if not page_token:
                break
    if not candidates:
        raise LoggedModelNotFound(f"run {run.info.run_id} has no logged model named {name!r}")
    steps = {o.model_id: o.step for o in (run.outputs.model_outputs if run.outputs else [])}
    return max(candidates, key=lambda m: (steps.get(m.model_id, -1), m.creation_timestamp or 0))


def register_run_model(
    client: MlflowClient,
    model_name: str,
    run: Run,
    tags: Mapping[str, str] | None = None,
    *,
    description: str | None = None,
    create_model: bool = True,
    creation_tags: Mapping[str, str] | None = None,
    known: list[ModelVersion] | None = None,
) -> ModelVersion:
    """Register the model logged by ``run`` as a version of ``model_name``, exactly once.

    Looks first for an existing version of ``model_name`` with this run id and returns it (adding
    missing ``tags``), so a retry after a crash or a restart never creates a second version. Else
    it creates the registered model if needed (without an owner tag: see
    :func:`ensure_registered_model`) and a version from the run's logged model (``models:/<model_id>``
    with ``model_id``, as MLflow 3 requires). Two processes racing on the same run can still
    create two versions; the operator handles one CR in one worker at a time.

    ``creation_tags`` are set only when the version is created (an existing version keeps its
    values, e.g. a stage tag set since). ``create_model=False`` skips the registered-model
    creation call for callers that just made sure it exists (the operator checks once per model
    and resync interval). ``known``: versions of the model the caller has just searched that hold
    any version made from this run (the operator's: every version of its semantic version, which
    it tags at creation), used instead of a search by run id.

    Raises:
        LoggedModelNotFound: the run logged no ``model`` artifact.
        RegistryUnavailable: MLflow unreachable.
    """
    wanted = dict(tags or {})
    if known is None:
        existing = find_versions_by_run(client, model_name, run.info.run_id)
    else:
        existing = sorted((v for v in known if v.run_id == run.info.run_id), key=_version_number)
    if existing:
        version = existing[0]
        set_version_tags(client, model_name, str(version.version), wanted, current=version.tags)
        return get_version(client, model_name, str(version.version)) or version
    logged = logged_model_of_run(client, run)
    with translate_errors("register_run_model"):
        if create_model:
            _create_registered_model(client, model_name)
        return client.create_model_version(
            name=model_name,
            source=f"models:/{logged.model_id}",
            run_id=run.info.run_id,
            tags={**dict(creation_tags or {}), **wanted},
            description=description,
            model_id=logged.model_id,
        )


def _create_registered_model(
    client: MlflowClient, name: str, tags: Mapping[str, str] | None = None
) -> RegisteredModel | None:
    """Create the registered model; returns None when it already existed (a race counts as existing)."""
    try:
        return client.create_registered_model(name, tags=dict(tags) if tags else None)
    except MlflowException as exc:
        if exc.error_code in _ALREADY_EXISTS:
            return None
        raise


def get_registered_model(client: MlflowClient, name: str) -> RegisteredModel | None:
    """The registered model ``name`` or None when it does not exist."""
    with translate_errors("get_registered_model"):
        try:
            return client.get_registered_model(name)
        except MlflowException as exc:
            if is_not_found(exc):
                return None
            raise


def model_namespace(client: MlflowClient, name: str) -> str | None:
    """The namespace that owns registered model ``name`` (its ``modelops.namespace`` tag); None when
    the model does not exist or carries no owner yet. Raises RegistryUnavailable."""
    model = get_registered_model(client, name)
    return (model.tags or {}).get(TAG_NAMESPACE) if model is not None else None


def ensure_registered_model(client: MlflowClient, name: str, namespace: str) -> str:
    """Make sure registered model ``name`` exists and belongs to ``namespace``; returns the owner namespace.

    A new model is created with the ownership tag ``modelops.namespace = namespace``; an existing
    model without the tag is claimed. Idempotent.

    Raises:
        ModelOwnedElsewhere: the model's tag names another namespace.
        RegistryUnavailable: MLflow unreachable.
    """
    model = get_registered_model(client, name)
    with translate_errors("ensure_registered_model"):
        if model is None:
            created = _create_registered_model(client, name, {TAG_NAMESPACE: namespace})
            if created is None:  # created concurrently: read the winner's tag
                model = client.get_registered_model(name)
        if model is not None:
            owner = model.tags.get(TAG_NAMESPACE)
            if owner and owner != namespace:
                raise ModelOwnedElsewhere(name, owner, namespace)
            if not owner:
                client.set_registered_model_tag(name, TAG_NAMESPACE, namespace)
    return namespace


def search_versions(client: MlflowClient, model: str) -> list[ModelVersion]:
    """All versions of registered model ``model`` with their tags (aliases not filled), by version number.

    One paged ``search_model_versions``; [] when the model does not exist.
    """
    with translate_errors("search_versions"):
        found: list[ModelVersion] = []
        page_token: str | None = None
        while True:
            page = client.search_model_versions(f"name = {_quote(model, 'model name')}", page_token=page_token)
            found.extend(page)
            page_token = page.token
            if not page_token:
                break
    return sorted(found, key=_version_number)


def list_versions(client: MlflowClient, model: str) -> list[ModelVersion]:
    """All versions of registered model ``model`` with tags and aliases, by version number; [] if none.

    ``search_model_versions`` leaves ``aliases`` empty on some stores (the SQL store), so they are
    filled from the registered model's alias map (one extra call).
    """
    registered = get_registered_model(client, model)
    if registered is None:
        return []
    found = search_versions(client, model)
    by_version: dict[str, list[str]] = {}
    for alias, number in (registered.aliases or {}).items():
        by_version.setdefault(str(number), []).append(alias)
    for version in found:
        version.aliases = sorted(by_version.get(str(version.version), []))
    return found


def get_version(client: MlflowClient, model: str, version: str) -> ModelVersion | None:
    """Registry version ``version`` (a number as a string) of ``model``, or None when it does not exist."""
    with translate_errors("get_version"):
        try:
            return client.get_model_version(model, str(version))
        except MlflowException as exc:
            if is_not_found(exc):
                return None
            raise


def oldest_with_semver(versions: list[ModelVersion], semver: str) -> ModelVersion | None:
    """Of ``versions``, the oldest tagged ``semver = <semver>``, or None (pure)."""
    found = [v for v in versions if (v.tags or {}).get(TAG_SEMVER) == semver]
    return min(found, key=_version_number) if found else None


def versions_with_semver(client: MlflowClient, model: str, semver: str) -> list[ModelVersion]:
    """Every version of ``model`` tagged ``semver = <semver>`` (one search; usually none or one)."""
    with translate_errors("versions_with_semver"):
        return list(
            client.search_model_versions(
                f"name = {_quote(model, 'model name')} and tags.`{TAG_SEMVER}` = {_quote(semver, 'semver')}"
            )
        )


def find_version_by_semver(client: MlflowClient, model: str, semver: str) -> ModelVersion | None:
    """The oldest version of ``model`` tagged ``semver = <semver>``, or None."""
    return oldest_with_semver(versions_with_semver(client, model, semver), semver)


def highest_semver(client: MlflowClient, model: str) -> str | None:
    """The highest semantic version among ``model``'s versions (TAG_SEMVER tags), or None.

    Ordering is semver precedence (1.10.0 > 1.9.0, 2.0.0 > 2.0.0-rc.1); versions without a
    parsable tag are ignored; archived versions count (a number is never reused).
    """
    return max_semver(v.tags.get(TAG_SEMVER) for v in search_versions(client, model))


def get_alias(client: MlflowClient, model: str, alias: str) -> str | None:
    """The registry version number ``model@alias`` points to, or None (no alias or no model).

    Uses the single-version getter ``get_model_version_by_alias``.
    """
    with translate_errors("get_alias"):
        try:
            return str(client.get_model_version_by_alias(model, alias).version)
        except MlflowException as exc:
            if is_not_found(exc):
                return None
            raise


def get_aliases_and_tags(client: MlflowClient, model: str) -> tuple[dict[str, str], dict[str, str]]:
    """``({alias: version number}, {tag: value})`` of registered model ``model``, from one
    ``get_registered_model`` call (instead of one lookup per alias); both empty when the model is absent."""
    registered = get_registered_model(client, model)
    if registered is None:
        return {}, {}
    return {str(k): str(v) for k, v in (registered.aliases or {}).items()}, dict(registered.tags or {})


def set_model_tag(client: MlflowClient, model: str, key: str, value: str) -> None:
    """Set tag ``key`` of registered model ``model``."""
    with translate_errors("set_model_tag"):
        client.set_registered_model_tag(model, key, value)


def set_alias(client: MlflowClient, model: str, alias: str, version: str, *, check: bool = True) -> bool:
    """Point ``model@alias`` at ``version``; returns True when it changed (False if already there).

    ``check=False`` skips reading the alias first, for callers that just read it.
    """
    if check and get_alias(client, model, alias) == str(version):
        return False
    with translate_errors("set_alias"):
        client.set_registered_model_alias(model, alias, str(version))
    return True


def delete_alias(client: MlflowClient, model: str, alias: str) -> None:
    """Remove ``model@alias``; a missing alias or model counts as done."""
    with translate_errors("delete_alias"):
        try:
            client.delete_registered_model_alias(model, alias)
        except MlflowException as exc:
            if not is_not_found(exc):
                raise


def set_version_tags(
    client: MlflowClient,
    model: str,
    version: str,
    tags: Mapping[str, str],
    *,
    current: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Set ``tags`` on a model version, skipping those that already have the value; returns the ones written.

    ``current`` is the version's known tags (read from MLflow when None). Raises an
    ``MlflowException`` with ``RESOURCE_DOES_NOT_EXIST`` if the version is gone.
    """
    with translate_errors("set_version_tags"):
        if current is None:
            current = client.get_model_version(model, str(version)).tags
        changed = {k: str(v) for k, v in tags.items() if current.get(k) != str(v)}
        for key, value in changed.items():
            client.set_model_version_tag(model, str(version), key, value)
    return changed


def delete_version_tag(client: MlflowClient, model: str, version: str, key: str) -> None:
    """Remove tag ``key`` from a model version; a missing tag or version counts as done."""
    with translate_errors("delete_version_tag"):
        try:
            client.delete_model_version_tag(model, str(version), key)
        except MlflowException as exc:
            if not is_not_found(exc):
                raise


#: Canonical stage names (the original document's four stages plus MLflow's "None").
STAGES = ("Development", "Staging", "Production", "Archived", "None")


def normalize_stage(stage: str) -> str:
    """The canonical spelling of a stage name (case-insensitive); ``ValueError`` for an unknown stage."""
    for name in STAGES:
        if stage.strip().lower() == name.lower():
            return name
    raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")


def stage_aliases_of(version: ModelVersion) -> list[str]:
    """The stage aliases (development, staging, production) that point at ``version``."""
    return [a for a in (version.aliases or []) if a in STAGE_ALIASES.values()]


def archive_version(client: MlflowClient, model: str, version: str) -> None:
    """Remove every stage alias pointing at ``version`` and tag it ``stage=Archived``; registry data is kept.

    Idempotent; a missing version or model counts as done (nothing to archive).
    """
    current = get_version(client, model, version)
    if current is None:
        return
    for alias in stage_aliases_of(current):
        delete_alias(client, model, alias)
    try:
        # The record of the operator's own write first (see contract.TAG_STAGE_WRITTEN), then the tag.
        wanted = {TAG_STAGE_WRITTEN: "Archived", TAG_STAGE: "Archived"}
        set_version_tags(client, model, version, wanted, current=current.tags)
    except MlflowException as exc:
        if not is_not_found(exc):
            raise


def transition_stage(
    client: MlflowClient, model: str, version: str, stage: str, *, archive_existing: bool = True
) -> ModelVersion:
    """Move ``version`` of ``model`` to ``stage`` with aliases and tags (never MLflow's deprecated stages).

    * Development/Staging/Production: the stage alias (``development``/``staging``/``production``)
      is pointed at ``version``, any other stage alias on it is removed (a version holds one stage)
      and its tag becomes ``stage=<Stage>``. Versions that held the stage before (the alias's
      previous target and any version still tagged with the stage) are tagged ``stage=Archived``
      when ``archive_existing``, else their ``stage`` tag is removed (they hold no stage any more:
      an alias has one target, so two versions cannot share a stage as they could in MLflow < 2.9).
    * Archived: stage aliases on ``version`` are removed, tag ``stage=Archived``.
    * None: stage aliases removed and the ``stage`` tag deleted.

    The alias moves first, so a crash half-way leaves the serving truth (the alias) correct and
    a retry completes the tags. Returns the updated version.

    Raises:
        ValueError: unknown stage.
        ModelVersionNotFound: no such version.
        RegistryUnavailable: MLflow unreachable.
    """
    canonical = normalize_stage(stage)
    version = str(version)
    current = get_version(client, model, version)
    if current is None:
        raise ModelVersionNotFound(f"model {model!r} has no version {version}")
    if canonical in ("Archived", "None"):
        if canonical == "Archived":
            archive_version(client, model, version)
        else:
            for alias in stage_aliases_of(current):
                delete_alias(client, model, alias)
            delete_version_tag(client, model, version, TAG_STAGE)
    else:
        alias = STAGE_ALIASES[canonical]
        previous = {get_alias(client, model, alias)}
        previous |= {str(v.version) for v in list_versions(client, model) if v.tags.get(TAG_STAGE) == canonical}
        previous -= {None, version}
        set_alias(client, model, alias, version)
        for other_alias in stage_aliases_of(current):
            if other_alias != alias:
                delete_alias(client, model, other_alias)
        set_version_tags(client, model, version, {TAG_STAGE: canonical}, current=current.tags)
        for other in sorted(v for v in previous if v is not None):
            if archive_existing:
                archive_version(client, model, other)
            else:
                delete_version_tag(client, model, other, TAG_STAGE)
    updated = get_version(client, model, version)
    if updated is None:
        raise ModelVersionNotFound(f"model {model!r} has no version {version}")
    return updated
