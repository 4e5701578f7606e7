"""Idempotent registry operations against a private sqlite MLflow store."""

from __future__ import annotations

import socket

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from modelops.contract import TAG_NAMESPACE, TAG_SEMVER, TAG_STAGE
from modelops.registry import operations as ops
from modelops.registry.errors import (
    LoggedModelNotFound,
    ModelOwnedElsewhere,
    ModelVersionNotFound,
    RegistryUnavailable,
    is_not_found,
    is_unavailable,
)
from modelops.registry.semantic import bump_version, max_semver
from tests.mlflow_testing import (  # noqa: F401
    LoggedRuns,
    logged_runs,
    logged_runs_template,
    mlflow_store,
    mlflow_template,
)


def test_register_run_model_is_idempotent(logged_runs: LoggedRuns) -> None:  # noqa: F811
    client = logged_runs.store.client
    run = client.get_run(logged_runs.run_ids[0])
    first = ops.register_run_model(client, "churn", run, {TAG_SEMVER: "1.0.0"}, creation_tags={"stage": "None"})
    assert first.tags == {TAG_SEMVER: "1.0.0", "stage": "None"}
    client.set_model_version_tag("churn", "1", "stage", "Production")  # promoted since
    again = ops.register_run_model(
        client, "churn", run, {TAG_SEMVER: "1.0.0", "extra": "yes"}, creation_tags={"stage": "None"}
    )
    assert str(first.version) == str(again.version) == "1"
    assert len(ops.list_versions(client, "churn")) == 1
    assert again.tags == {TAG_SEMVER: "1.0.0", "extra": "yes", "stage": "Production"}  # creation tags only once
    assert first.run_id == run.info.run_id
    assert str(first.source).startswith("models:/m-")
    # Another run makes another version.
    other = ops.register_run_model(client, "churn", client.get_run(logged_runs.run_ids[1]), {})
    assert str(other.version) == "2"


def test_register_run_without_model(logged_runs: LoggedRuns) -> None:  # noqa: F811
    client = logged_runs.store.client
    with pytest.raises(LoggedModelNotFound, match=logged_runs.empty_run_id):
        ops.register_run_model(client, "churn", client.get_run(logged_runs.empty_run_id), {})
    assert ops.list_versions(client, "churn") == []


def test_find_run_by_uid(logged_runs: LoggedRuns) -> None:  # noqa: F811
    client = logged_runs.store.client
    found = ops.find_run_by_uid(client, logged_runs.experiment, "uid-1")
    assert found is not None and found.info.run_id == logged_runs.run_ids[1]
    assert ops.find_run_by_uid(client, logged_runs.experiment, "uid-1", status="FAILED") is None
    assert ops.find_run_by_uid(client, logged_runs.experiment, "no-such-uid") is None
    assert ops.find_run_by_uid(client, "no-such-experiment", "uid-1") is None
    # A retried Job: the newest run wins.
    exp = client.get_experiment_by_name(logged_runs.experiment)
    assert exp is not None
    retry = client.create_run(exp.experiment_id, tags={"modelops.uid": "uid-1"})
    newest = ops.find_run_by_uid(client, logged_runs.experiment, "uid-1")
    assert newest is not None and newest.info.run_id == retry.info.run_id


def test_ownership(mlflow_store) -> None:  # noqa: F811
    client: MlflowClient = mlflow_store.client
    assert ops.ensure_registered_model(client, "fraud", "team-a") == "team-a"
    assert ops.ensure_registered_model(client, "fraud", "team-a") == "team-a"  # idempotent
    assert client.get_registered_model("fraud").tags[TAG_NAMESPACE] == "team-a"
    with pytest.raises(ModelOwnedElsewhere) as info:
        ops.ensure_registered_model(client, "fraud", "team-b")
    assert (info.value.owner, info.value.namespace) == ("team-a", "team-b")
    assert "belongs to namespace 'team-a'" in str(info.value)
    # A model created outside modelops (no tag) is claimed by the first namespace.
    client.create_registered_model("legacy")
    assert ops.ensure_registered_model(client, "legacy", "team-b") == "team-b"
    assert client.get_registered_model("legacy").tags[TAG_NAMESPACE] == "team-b"


def _versions(client: MlflowClient, run_id: str, model: str, semvers: list[str | None]) -> None:
    """Register one version per entry, tagged with that semantic version (None: untagged)."""
    run = client.get_run(run_id)
    logged = ops.logged_model_of_run(client, run)
    client.create_registered_model(model)
    for semver in semvers:
        tags = {TAG_SEMVER: semver} if semver else {}
        client.create_model_version(
            model, f"models:/{logged.model_id}", run_id=run_id, tags=tags, model_id=logged.model_id
        )


def test_highest_semver_ordering(logged_runs: LoggedRuns) -> None:  # noqa: F811
    client = logged_runs.store.client
    assert ops.highest_semver(client, "none-yet") is None
    _versions(client, logged_runs.run_ids[0], "m1", ["1.9.0", "1.10.0-rc.1", None, "not-a-version", "1.2.0"])
    assert ops.highest_semver(client, "m1") == "1.10.0-rc.1"  # 1.10 > 1.9 numerically, not as text
    _versions(client, logged_runs.run_ids[0], "m2", ["2.0.0-alpha", "2.0.0-rc.1", "2.0.0-beta.11", "1.99.99"])
    assert ops.highest_semver(client, "m2") == "2.0.0-rc.1"
    _versions(client, logged_runs.run_ids[0], "m3", ["2.0.0-rc.1", "2.0.0", "1.10.0"])
    assert ops.highest_semver(client, "m3") == "2.0.0"
    found = ops.find_version_by_semver(client, "m3", "2.0.0")
    assert found is not None and str(found.version) == "2"


def test_semver_helpers() -> None:
    assert max_semver(["1.9.0", "1.10.0", "v1.10.1", "junk", None]) == "v1.10.1"
    assert max_semver([]) is None
    assert bump_version("1.10.0", "patch") == "1.10.1"
    assert bump_version("1.10.3", "minor") == "1.11.0"
    assert bump_version("1.10.3", "major") == "2.0.0"
    assert bump_version(None, "minor") == "0.1.0"
    assert bump_version("2.0.0-rc.1", "major") == "2.0.0"  # finalises the pre-release
    assert bump_version("1.2.3-rc.1", "patch") == "1.2.3"
    with pytest.raises(ValueError):
        bump_version("1.x", "patch")


def test_aliases_set_move_delete(logged_runs: LoggedRuns) -> None:  # noqa: F811
    client = logged_runs.store.client
    assert ops.get_alias(client, "no-model", "production") is None
    _versions(client, logged_runs.run_ids[0], "m", ["1.0.0", "1.1.0"])
    assert ops.get_alias(client, "m", "production") is None
    assert ops.set_alias(client, "m", "production", "1") is True
    assert ops.set_alias(client, "m", "production", "1") is False  # already there
    assert ops.get_alias(client, "m", "production") == "1"
    assert ops.set_alias(client, "m", "production", "2") is True  # moved
    assert ops.get_alias(client, "m", "production") == "2"
    ops.delete_alias(client, "m", "production")
    ops.delete_alias(client, "m", "production")  # missing: done
    ops.delete_alias(client, "no-model", "production")
    assert ops.get_alias(client, "m", "production") is None


def test_version_tags(logged_runs: LoggedRuns) -> None:  # noqa: F811
    client = logged_runs.store.client
    _versions(client, logged_runs.run_ids[0], "m", ["1.0.0"])
    assert ops.set_version_tags(client, "m", "1", {TAG_SEMVER: "1.0.0", "a": "1"}) == {"a": "1"}
    assert ops.set_version_tags(client, "m", "1", {"a": "1"}) == {}
    ops.delete_version_tag(client, "m", "1", "a")
    ops.delete_version_tag(client, "m", "1", "a")
    assert client.get_model_version("m", "1").tags == {TAG_SEMVER: "1.0.0"}
    assert ops.get_version(client, "m", "7") is None
    with pytest.raises(MlflowException) as info:
        ops.set_version_tags(client, "m", "7", {"a": "1"})
    assert is_not_found(info.value)


def test_transition_stage_with_aliases_and_tags(logged_runs: LoggedRuns) -> None:  # noqa: F811
    client = logged_runs.store.client
    _versions(client, logged_runs.run_ids[0], "m", ["1.0.0", "1.1.0", "1.2.0"])

    def state() -> dict[str, tuple[str | None, list[str]]]:
        return {str(v.version): (v.tags.get(TAG_STAGE), sorted(v.aliases)) for v in ops.list_versions(client, "m")}

    ops.transition_stage(client, "m", "1", "production")
    assert state()["1"] == ("Production", ["production"])
    ops.transition_stage(client, "m", "2", "Production", archive_existing=True)
    assert state() == {"1": ("Archived", []), "2": ("Production", ["production"]), "3": (None, [])}
    ops.transition_stage(client, "m", "3", "Staging")
    assert state()["3"] == ("Staging", ["staging"])
    # Promote 3 without archiving: 2 loses the stage (an alias has one target) but is not archived.
    ops.transition_stage(client, "m", "3", "Production", archive_existing=False)
    assert state() == {"1": ("Archived", []), "2": (None, []), "3": ("Production", ["production"])}
    ops.transition_stage(client, "m", "3", "Archived")
    assert state()["3"] == ("Archived", [])
    assert ops.get_alias(client, "m", "production") is None
    ops.transition_stage(client, "m", "1", "None")
    assert state()["1"] == (None, [])
    with pytest.raises(ValueError, match="unknown stage"):
        ops.transition_stage(client, "m", "1", "Prod")
    with pytest.raises(ModelVersionNotFound):
        ops.transition_stage(client, "m", "9", "Staging")
    ops.archive_version(client, "m", "9")  # missing: nothing to do


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server_is_a_specific_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    url = f"http://127.0.0.1:{_closed_port()}"
    client = MlflowClient(tracking_uri=url, registry_uri=url)  # not a registry URI set globally by another test
    with pytest.raises(RegistryUnavailable, match="MLflow unreachable during get_alias") as info:
        ops.get_alias(client, "m", "production")
    assert is_unavailable(info.value.__cause__)  # type: ignore[arg-type]
    with pytest.raises(RegistryUnavailable):
        ops.highest_semver(client, "m")
    with pytest.raises(RegistryUnavailable):
        ops.ensure_registered_model(client, "m", "ns")
    assert not is_unavailable(MlflowException("Registered Model with name=x not found"))


def test_filter_injection_is_refused(mlflow_store) -> None:  # noqa: F811
    with pytest.raises(ValueError, match="single quote"):
        ops.find_version_by_semver(mlflow_store.client, "x' or name != 'y", "1.0.0")
