"""Fidelity of the sandbox's API emulator, over real HTTP against ``python -m modelops.sandbox.apiserver``."""

from __future__ import annotations

import copy
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from modelops.sandbox.apiserver import ApiServerProcess, spawn
from modelops.sandbox.kubeconfig import write_kubeconfig
from tests.conftest import ROOT, load_yaml_docs

GROUP = "ml.smarthr360.io"
MERGE = {"Content-Type": "application/merge-patch+json"}
JSONPATCH = {"Content-Type": "application/json-patch+json"}
STRATEGIC = {"Content-Type": "application/strategic-merge-patch+json"}
KUBECTL = str(Path(sys.executable).with_name("kubectl"))
HISTORY = 60


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServerProcess]:
    log = (tmp_path_factory.mktemp("apiserver") / "apiserver.log").open("w")
    proc = spawn(ROOT / "crds", history=HISTORY, stderr=log)
    try:
        yield proc
    finally:
        code = proc.stop()
        log.close()
        assert code == 0, "the server did not stop cleanly on SIGTERM"


@pytest.fixture(scope="module")
def api(server: ApiServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


@pytest.fixture
def ns(api: httpx.Client) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    assert api.post("/api/v1/namespaces", json={"metadata": {"name": name}}).status_code == 201
    return name


def mvs(ns: str, name: str = "", sub: str = "") -> str:
    path = f"/apis/{GROUP}/v1alpha1/namespaces/{ns}/modelversions"
    return path + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


def mv_body(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    body = copy.deepcopy(load_yaml_docs(ROOT / "manifests" / "samples" / "modelversion-1.0.0.yaml")[0])
    body["metadata"] = {"name": name, "labels": labels or {}}
    body["spec"].update(spec)
    return body


def create_mv(api: httpx.Client, ns: str, name: str, **kwargs: Any) -> dict[str, Any]:
    response = api.post(mvs(ns), json=mv_body(name, **kwargs))
    assert response.status_code == 201, response.text
    return dict(response.json())


def rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait for ``check`` (a liveness bound: the emulator is another process, a watch a thread here;
    30 s as in test_apiserver_kopf, 5 s was a few slices of CPU on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# -- discovery ---------------------------------------------------------------------------------
def test_discovery_serves_crds_and_builtins(api: httpx.Client) -> None:
    assert api.get("/api").json()["versions"] == ["v1"]
    groups = {g["name"] for g in api.get("/apis").json()["groups"]}
    assert {
        GROUP,
        "apps",
        "batch",
        "policy",
        "autoscaling",
        "coordination.k8s.io",
        "events.k8s.io",
        "apiextensions.k8s.io",
    } <= groups
    core = {r["name"]: r for r in api.get("/api/v1").json()["resources"]}
    assert {"namespaces", "events", "secrets", "configmaps", "services", "endpoints", "pods", "serviceaccounts"} <= set(
        core
    )
    assert core["namespaces"]["namespaced"] is False and core["pods"]["kind"] == "Pod"
    ours = {r["name"]: r for r in api.get(f"/apis/{GROUP}/v1alpha1").json()["resources"]}
    assert ours["modelversions"]["shortNames"] == ["mv"] and ours["modelversions"]["kind"] == "ModelVersion"
    assert ours["modelversions/status"]["verbs"] == ["get", "patch", "update"]
    assert "modelmonitors/status" in ours
    crds = api.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions").json()
    assert {c["metadata"]["name"] for c in crds["items"]} == {f"modelversions.{GROUP}", f"modelmonitors.{GROUP}"}
    established = crds["items"][0]["status"]["conditions"]
    assert {"type": "Established", "status": "True"}.items() <= established[1].items()
    assert api.get("/apis/nope.example.com/v1").status_code == 404


# -- metadata ----------------------------------------------------------------------------------
def test_server_sets_metadata_and_resource_versions_increase(api: httpx.Client, ns: str) -> None:
    obj = create_mv(api, ns, "meta")
    meta = obj["metadata"]
    assert uuid.UUID(meta["uid"]) and meta["generation"] == 1 and meta["namespace"] == ns
    assert time.strptime(meta["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
    versions = [rv(obj)]
    for i in range(3):
        obj = api.patch(mvs(ns, "meta"), json={"metadata": {"labels": {"n": str(i)}}}, headers=MERGE).json()
        versions.append(rv(obj))
    assert versions == sorted(versions) and len(set(versions)) == 4
    assert api.get(mvs(ns, "meta")).json() == obj
    # a write that changes nothing changes no resourceVersion (as on a real server)
    same = api.patch(mvs(ns, "meta"), json={"metadata": {"labels": {"n": "2"}}}, headers=MERGE).json()
    assert rv(same) == versions[-1]
    generated = api.post(
        "/api/v1/namespaces/" + ns + "/events", json={"metadata": {"generateName": "kopf-event-"}, "reason": "x"}
    ).json()
    assert generated["metadata"]["name"].startswith("kopf-event-") and len(generated["metadata"]["name"]) == 16


def test_generation_bumps_only_when_spec_changes(api: httpx.Client, ns: str) -> None:
    create_mv(api, ns, "gen")

    def generation() -> int:
        return int(api.get(mvs(ns, "gen")).json()["metadata"]["generation"])

    api.patch(mvs(ns, "gen"), json={"metadata": {"labels": {"a": "b"}, "annotations": {"c": "d"}}}, headers=MERGE)
    assert generation() == 1
    api.patch(mvs(ns, "gen", "status"), json={"status": {"phase": "Training"}}, headers=MERGE)
    assert generation() == 1
    api.patch(mvs(ns, "gen"), json={"spec": {"stage": "Staging"}}, headers=MERGE)
    assert generation() == 2
    api.patch(mvs(ns, "gen"), json={"spec": {"stage": "Staging"}}, headers=MERGE)
    assert generation() == 2


def test_status_subresource_isolation_both_ways(api: httpx.Client, ns: str) -> None:
    body = mv_body("iso")
    body["status"] = {"phase": "Ready"}
    created = api.post(mvs(ns), json=body).json()
    assert "status" not in created  # status is ignored on create
    main = api.patch(
        mvs(ns, "iso"), json={"spec": {"stage": "Staging"}, "status": {"phase": "Failed"}}, headers=MERGE
    ).json()
    assert main["spec"]["stage"] == "Staging" and "status" not in main
    status = api.patch(
        mvs(ns, "iso", "status"),
        json={
            "spec": {"stage": "Archived"},
            "metadata": {"labels": {"x": "y"}},
            "status": {"phase": "Training", "observedGeneration": 2},
        },
        headers=MERGE,
    ).json()
    assert status["status"] == {"phase": "Training", "observedGeneration": 2}
    assert status["spec"]["stage"] == "Staging" and "x" not in status["metadata"].get("labels", {})
    # PUT of the main resource keeps the stored status; PUT of /status keeps the spec
    put = dict(status)
    put["spec"] = {**put["spec"], "stage": "Production"}
    put["status"] = {"phase": "Failed"}
    replaced = api.put(mvs(ns, "iso"), json=put).json()
    assert replaced["status"]["phase"] == "Training" and replaced["spec"]["stage"] == "Production"
    replaced["spec"]["stage"] = "Development"
    replaced["status"] = {"phase": "Ready"}
    status_put = api.put(mvs(ns, "iso", "status"), json=replaced).json()
    assert status_put["status"] == {"phase": "Ready"} and status_put["spec"]["stage"] == "Production"


# -- validation --------------------------------------------------------------------------------
def _invalid(response: httpx.Response, field: str) -> str:
    assert response.status_code == 422, response.text
    status = response.json()
    assert (status["kind"], status["apiVersion"], status["status"], status["reason"], status["code"]) == (
        "Status",
        "v1",
        "Failure",
        "Invalid",
        422,
    )
    assert field in [c["field"] for c in status["details"]["causes"]], status
    assert status["details"]["kind"] == "ModelVersion" and status["details"]["group"] == GROUP
    return str(status["message"])


@pytest.mark.parametrize(
    ("change", "field", "detail"),
    [
        (lambda s: s.update(stage="Prod"), "spec.stage", 'spec.stage: Unsupported value: "Prod": supported values: '),
        (
            lambda s: s.update(model="Bad_Name"),
            "spec.model",
            'Invalid value: "Bad_Name": spec.model in body should match',
        ),
        (
            lambda s: s["training"].update(testSize=1.5),
            "spec.training.testSize",
            "spec.training.testSize: Invalid value: 1.5: spec.training.testSize in body should be less than 1",
        ),
        (
            lambda s: s["training"].update(backoffLimit=-1),
            "spec.training.backoffLimit",
            "should be greater than or equal to 0",
        ),
        (
            lambda s: s.update(unknownField=1),
            "spec.unknownField",
            'spec.unknownField: unknown field "spec.unknownField"',
        ),
        (lambda s: s["training"].pop("data"), "spec.training.data", "spec.training.data: Required value"),
        (
            lambda s: s.update(versionBump="minor"),
            "spec.version",
            "spec.version: Invalid value: exactly one of spec.version and spec.versionBump must be set",
        ),
        (lambda s: s.pop("version"), "spec.version", "exactly one of spec.version and spec.versionBump"),
    ],
)
def test_invalid_custom_resources_get_422_naming_the_field(
    api: httpx.Client, ns: str, change: Callable[[dict[str, Any]], Any], field: str, detail: str
) -> None:
    body = mv_body("bad")
    change(body["spec"])
    message = _invalid(api.post(mvs(ns), json=body), field)
    assert message.startswith(f'ModelVersion.{GROUP} "bad" is invalid: ')
    assert detail in message
    assert api.get(mvs(ns, "bad")).status_code == 404


def test_several_errors_are_bracketed(api: httpx.Client, ns: str) -> None:
    body = mv_body("bad", stage="Prod", model="Bad_Name")
    message = _invalid(api.post(mvs(ns), json=body), "spec.stage")
    assert f'ModelVersion.{GROUP} "bad" is invalid: [spec.model: ' in message and message.endswith("]")


def test_transition_rules_make_version_and_model_immutable(api: httpx.Client, ns: str) -> None:
    create_mv(api, ns, "imm")
    message = _invalid(api.patch(mvs(ns, "imm"), json={"spec": {"version": "1.0.1"}}, headers=MERGE), "spec.version")
    assert "spec.version: Forbidden: spec.version is immutable once set" in message
    _invalid(api.patch(mvs(ns, "imm"), json={"spec": {"model": "other"}}, headers=MERGE), "spec.model")
    assert api.get(mvs(ns, "imm")).json()["spec"]["version"] == "1.0.0"
    ok = api.patch(mvs(ns, "imm"), json={"spec": {"stage": "Staging"}}, headers=MERGE)
    assert ok.status_code == 200


def test_defaults_are_applied(api: httpx.Client, ns: str) -> None:
    body = mv_body("defaults")
    del body["spec"]["stage"]
    del body["spec"]["training"]["testSize"]
    del body["spec"]["promotion"]
    obj = api.post(mvs(ns), json=body).json()
    assert obj["spec"]["stage"] == "Development"
    assert obj["spec"]["training"]["testSize"] == 0.2 and obj["spec"]["training"]["backoffLimit"] == 2
    assert "promotion" not in obj["spec"]  # defaults apply inside present objects only
    patched = api.patch(mvs(ns, "defaults"), json={"spec": {"promotion": {}}}, headers=MERGE).json()
    assert patched["spec"]["promotion"]["metric"] == "accuracy"


def test_field_validation_modes_for_unknown_fields(api: httpx.Client, ns: str) -> None:
    body = mv_body("lax", extra="x")
    assert api.post(mvs(ns), json=body, params={"fieldValidation": "Strict"}).status_code == 422
    warned = api.post(mvs(ns), json=body, params={"fieldValidation": "Warn"})
    assert warned.status_code == 201 and "extra" not in warned.json()["spec"]
    assert 'unknown field \\"spec.extra\\"' in warned.headers["Warning"]
    ignored = api.patch(
        mvs(ns, "lax"), json={"spec": {"extra": 1}}, headers=MERGE, params={"fieldValidation": "Ignore"}
    )
    assert ignored.status_code == 200 and "extra" not in ignored.json()["spec"] and "Warning" not in ignored.headers


def test_status_writes_are_pruned_and_validated(api: httpx.Client, ns: str) -> None:
    create_mv(api, ns, "st")
    registry = {"model": "m", "version": "3", "runId": "r", "modelUri": "models:/m/3"}
    response = api.patch(
        mvs(ns, "st", "status"),
        json={"status": {"phase": "Ready", "bogus": 1, "registry": {**registry, "junk": True}}},
        headers=MERGE,
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == {"phase": "Ready", "registry": registry}
    assert "status.bogus" in response.headers["Warning"]
    strict = api.patch(
        mvs(ns, "st", "status"), json={"status": {"bogus": 1}}, headers=MERGE, params={"fieldValidation": "Strict"}
    )
    assert strict.status_code == 422
    bad = api.patch(mvs(ns, "st", "status"), json={"status": {"observedGeneration": -1}}, headers=MERGE)
    assert bad.status_code == 422 and bad.json()["details"]["causes"][0]["field"] == "status.observedGeneration"


# -- requests and errors -----------------------------------------------------------------------
def test_conflicts_not_found_and_put(api: httpx.Client, ns: str) -> None:
    obj = create_mv(api, ns, "put")
    dup = api.post(mvs(ns), json=mv_body("put"))
    assert dup.status_code == 409 and dup.json()["reason"] == "AlreadyExists"
    missing = api.get(mvs(ns, "nope"))
    assert missing.status_code == 404
    assert missing.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'modelversions.{GROUP} "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "group": GROUP, "kind": "modelversions"},
        "code": 404,
    }
    fresh = copy.deepcopy(obj)
    fresh["spec"]["stage"] = "Staging"
    updated = api.put(mvs(ns, "put"), json=fresh)
    assert updated.status_code == 200 and rv(updated.json()) > rv(obj)
    stale = api.put(mvs(ns, "put"), json=fresh)  # still carries the old resourceVersion
    assert stale.status_code == 409 and stale.json()["reason"] == "Conflict"
    precondition = api.patch(
        mvs(ns, "put"),
        json={"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}, "spec": {"stage": "Archived"}},
        headers=MERGE,
    )
    assert precondition.status_code == 409
    renamed = api.put(mvs(ns, "put"), json={**updated.json(), "metadata": {**updated.json()["metadata"], "name": "x"}})
    assert renamed.status_code == 400
    assert api.put(mvs(ns, "absent"), json=mv_body("absent")).status_code == 404
    assert api.post("/api/v1/namespaces/no-such-ns/configmaps", json={"metadata": {"name": "c"}}).status_code == 404


def test_json_patch_and_its_test_operation(api: httpx.Client, ns: str) -> None:
    obj = create_mv(api, ns, "jp")
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": obj["metadata"]["resourceVersion"]},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x/y"]},
    ]
    assert api.patch(mvs(ns, "jp"), json=ops, headers=JSONPATCH).json()["metadata"]["finalizers"] == ["x/y"]
    stale = api.patch(mvs(ns, "jp"), json=ops, headers=JSONPATCH)  # the resourceVersion moved on
    assert stale.status_code == 422
    assert api.patch(mvs(ns, "jp"), json={"spec": {}}, headers=STRATEGIC).status_code == 415


def test_strategic_merge_patch_of_a_deployment(api: httpx.Client, ns: str) -> None:
    labels = {"app": "web"}
    deployment = {
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "app", "image": "img:1", "env": [{"name": "A", "value": "1"}]},
                        {"name": "side", "image": "side:1"},
                    ]
                },
            },
        },
    }
    path = f"/apis/apps/v1/namespaces/{ns}/deployments"
    created = api.post(path, json=deployment).json()
    assert created["metadata"]["generation"] == 1 and created["spec"]["replicas"] == 1  # defaulted
    assert created["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "img:2"}]}}}}
    patched = api.patch(f"{path}/web", json=patch, headers=STRATEGIC).json()
    containers = patched["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("app", "img:2"), ("side", "side:1")]
    assert containers[0]["env"] == [{"name": "A", "value": "1"}] and patched["metadata"]["generation"] == 2
    status = api.patch(f"{path}/web/status", json={"status": {"readyReplicas": 1}}, headers=MERGE).json()
    assert status["metadata"]["generation"] == 2 and status["status"] == {"readyReplicas": 1}


def test_builtin_validation_and_immutability(api: httpx.Client, ns: str) -> None:
    jobs = f"/apis/batch/v1/namespaces/{ns}/jobs"
    job = {"metadata": {"name": "train"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    always = api.post(jobs, json=job)
    assert always.status_code == 422
    assert 'spec.template.spec.restartPolicy: Unsupported value: "Always"' in always.json()["message"]
    job["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    created = api.post(jobs, json=job).json()
    uid = created["metadata"]["uid"]
    assert created["spec"]["backoffLimit"] == 6
    assert created["spec"]["selector"]["matchLabels"] == {"batch.kubernetes.io/controller-uid": uid}
    assert created["spec"]["template"]["metadata"]["labels"]["job-name"] == "train"
    change = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "other"}]}}}}
    immutable = api.patch(f"{jobs}/train", json=change, headers=MERGE)
    assert immutable.status_code == 422 and "spec.template: Invalid value" in immutable.json()["message"]
    suspended = api.patch(f"{jobs}/train", json={"spec": {"suspend": True}}, headers=MERGE)
    assert suspended.status_code == 200
    bad_name = api.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "Bad_Name"}})
    assert bad_name.status_code == 422 and bad_name.json()["details"]["causes"][0]["field"] == "metadata.name"
    bad_label = api.post(
        f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "c", "labels": {"v": "1.0.0+build"}}}
    )
    assert bad_label.status_code == 422


# -- selectors, lists and watches --------------------------------------------------------------
def test_lists_have_kind_and_selectors_filter(api: httpx.Client, ns: str) -> None:
    for name, labels in (("a", {"app": "x", "tier": "web"}), ("b", {"app": "y"}), ("c", {})):
        create_mv(api, ns, name, labels=labels)
    listing = api.get(mvs(ns)).json()
    assert listing["kind"] == "ModelVersionList" and listing["apiVersion"] == f"{GROUP}/v1alpha1"
    assert int(listing["metadata"]["resourceVersion"]) >= max(rv(i) for i in listing["items"])

    def names(**params: str) -> list[str]:
        return [i["metadata"]["name"] for i in api.get(mvs(ns), params=params).json()["items"]]

    assert names() == ["a", "b", "c"]
    assert names(labelSelector="app=x") == ["a"]
    assert names(labelSelector="app==y") == ["b"]
    assert names(labelSelector="app!=x") == ["b", "c"]
    assert names(labelSelector="app in (x,y)") == ["a", "b"]
    assert names(labelSelector="app notin (x)") == ["b", "c"]
    assert names(labelSelector="app") == ["a", "b"]
    assert names(labelSelector="!app") == ["c"]
    assert names(labelSelector="app,tier=web") == ["a"]
    assert names(fieldSelector="metadata.name=b") == ["b"]
    assert names(fieldSelector="metadata.name!=b") == ["a", "c"]
    assert names(limit="2") == ["a", "b"]
    page = api.get(mvs(ns), params={"limit": "2"}).json()["metadata"]
    assert page["remainingItemCount"] == 1
    assert names(limit="2", **{"continue": page["continue"]}) == ["c"]
    everywhere = api.get(f"/apis/{GROUP}/v1alpha1/modelversions", params={"fieldSelector": f"metadata.namespace={ns}"})
    assert len(everywhere.json()["items"]) == 3
    assert api.get(mvs(ns), params={"labelSelector": "app in x"}).status_code == 400


class Watch:
    """Collect a watch stream's events in a background thread (``close`` ends it at once)."""

    def __init__(self, url: str, path: str, **params: str) -> None:
        self.events: list[dict[str, Any]] = []
        parsed = httpx.URL(url)
        self._conn = http.client.HTTPConnection(parsed.host, parsed.port, timeout=10)
        self._conn.request("GET", f"{path}?{urlencode({'watch': 'true', **params})}")
        self._response = self._conn.getresponse()
        assert self._response.status == 200
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while line := self._response.readline():
                if line.strip():
                    self.events.append(json.loads(line))
        except (OSError, ValueError, http.client.HTTPException):
            pass  # closed by the test

    def summary(self) -> list[tuple[str, str]]:
        return [(e["type"], e["object"]["metadata"].get("name", "")) for e in self.events]

    def wait_for(self, count: int) -> list[tuple[str, str]]:
        eventually(lambda: len(self.events) >= count)
        return self.summary()

    def close(self) -> None:
        if self._conn.sock is not None:
            self._conn.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)
        self._conn.close()
        assert not self._thread.is_alive()


def test_watch_with_label_selector_and_resume(api: httpx.Client, server: ApiServerProcess, ns: str) -> None:
    create_mv(api, ns, "pre", labels={"watch": "yes"})
    create_mv(api, ns, "other")
    start = api.get(mvs(ns)).json()["metadata"]["resourceVersion"]
    initial = Watch(server.url, mvs(ns), labelSelector="watch=yes")
    assert initial.wait_for(1) == [("ADDED", "pre")]  # no resourceVersion: current state first
    watch = Watch(server.url, mvs(ns), labelSelector="watch=yes", resourceVersion=start)
    create_mv(api, ns, "w1", labels={"watch": "yes"})
    create_mv(api, ns, "w2")  # not selected
    api.patch(mvs(ns, "w1"), json={"spec": {"stage": "Staging"}}, headers=MERGE)
    api.patch(mvs(ns, "w2"), json={"metadata": {"labels": {"watch": "yes"}}}, headers=MERGE)
    api.patch(mvs(ns, "w1"), json={"metadata": {"labels": {"watch": "no"}}}, headers=MERGE)
    api.delete(mvs(ns, "w2"))
    expected = [("ADDED", "w1"), ("MODIFIED", "w1"), ("ADDED", "w2"), ("DELETED", "w1"), ("DELETED", "w2")]
    assert watch.wait_for(5) == expected
    assert watch.events[0]["object"]["kind"] == "ModelVersion"
    middle = watch.events[1]["object"]["metadata"]["resourceVersion"]
    watch.close()
    initial.close()
    # resuming from a resourceVersion replays only what came after it
    resumed = Watch(server.url, mvs(ns), labelSelector="watch=yes", resourceVersion=middle)
    assert resumed.wait_for(3) == expected[2:]
    time.sleep(0.2)
    assert len(resumed.events) == 3
    resumed.close()


def test_watch_from_a_too_old_resource_version_gets_410(api: httpx.Client, ns: str) -> None:
    path = f"/api/v1/namespaces/{ns}/secrets"
    first = api.post(path, json={"metadata": {"name": "s0"}}).json()
    for i in range(1, HISTORY + 2):
        api.post(path, json={"metadata": {"name": f"s{i}"}})
    response = api.get(
        path, params={"watch": "true", "resourceVersion": first["metadata"]["resourceVersion"], "timeoutSeconds": "1"}
    )
    event = json.loads(response.text.splitlines()[0])
    assert event["type"] == "ERROR" and event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"


def test_watch_timeout_seconds_ends_the_stream(api: httpx.Client, ns: str) -> None:
    started = time.monotonic()
    response = api.get(mvs(ns), params={"watch": "true", "timeoutSeconds": "1"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    assert 0.9 < time.monotonic() - started < 5


# -- deletion: finalizers, garbage collection, namespaces ------------------------------------
def test_finalizers_hold_deletion_until_removed(api: httpx.Client, server: ApiServerProcess, ns: str) -> None:
    create_mv(api, ns, "fin")
    api.patch(mvs(ns, "fin"), json={"metadata": {"finalizers": ["modelops/cleanup"]}}, headers=MERGE)
    start = api.get(mvs(ns, "fin")).json()["metadata"]["resourceVersion"]
    watch = Watch(server.url, mvs(ns), fieldSelector="metadata.name=fin", resourceVersion=start)
    deleting = api.delete(mvs(ns, "fin"))
    assert deleting.status_code == 200
    held = api.get(mvs(ns, "fin")).json()
    assert held["metadata"]["deletionTimestamp"] and held["metadata"]["finalizers"] == ["modelops/cleanup"]
    assert held["metadata"]["generation"] == 2  # a real server bumps it when deletion starts
    again = api.patch(mvs(ns, "fin"), json={"metadata": {"finalizers": ["modelops/cleanup", "new/one"]}}, headers=MERGE)
    assert again.status_code == 422  # no new finalizers on an object being deleted
    status = api.patch(mvs(ns, "fin", "status"), json={"status": {"phase": "Failed"}}, headers=MERGE)
    assert status.status_code == 200
    api.patch(mvs(ns, "fin"), json={"metadata": {"finalizers": None}}, headers=MERGE)
    assert api.get(mvs(ns, "fin")).status_code == 404
    assert watch.wait_for(4) == [("MODIFIED", "fin")] * 3 + [("DELETED", "fin")]
    watch.close()


def _owner(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
    }


def test_garbage_collection_cascades_by_uid(api: httpx.Client, ns: str) -> None:
    mv = create_mv(api, ns, "owner")
    other = api.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "other"}}).json()
    labels = {"app": "m"}
    pod_spec = {"containers": [{"name": "c", "image": "i"}]}
    dep = api.post(
        f"/apis/apps/v1/namespaces/{ns}/deployments",
        json={
            "metadata": {"name": "m", "ownerReferences": [_owner(mv)]},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            },
        },
    ).json()
    rs = api.post(
        f"/apis/apps/v1/namespaces/{ns}/replicasets",
        json={
            "metadata": {"name": "m-1", "ownerReferences": [_owner(dep)]},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            },
        },
    ).json()
    api.post(
        f"/api/v1/namespaces/{ns}/pods",
        json={"metadata": {"name": "m-1-a", "ownerReferences": [_owner(rs)]}, "spec": pod_spec},
    )
    api.post(
        f"/api/v1/namespaces/{ns}/configmaps",
        json={"metadata": {"name": "shared", "ownerReferences": [_owner(mv), _owner(other)]}},
    )
    api.post(
        f"/api/v1/namespaces/{ns}/secrets",
        json={"metadata": {"name": "finalized", "finalizers": ["x/y"], "ownerReferences": [_owner(mv)]}},
    )
    assert api.delete(mvs(ns, "owner")).status_code == 200
    gone = [
        f"/apis/apps/v1/namespaces/{ns}/deployments/m",
        f"/apis/apps/v1/namespaces/{ns}/replicasets/m-1",
        f"/api/v1/namespaces/{ns}/pods/m-1-a",
    ]
    eventually(lambda: all(api.get(path).status_code == 404 for path in gone))
    shared = api.get(f"/api/v1/namespaces/{ns}/configmaps/shared").json()
    assert [r["name"] for r in shared["metadata"]["ownerReferences"]] == ["other"]  # dangling reference dropped
    finalized = api.get(f"/api/v1/namespaces/{ns}/secrets/finalized").json()
    assert finalized["metadata"]["deletionTimestamp"]  # collected, but held by its finalizer
    # a dependent created for an owner that does not exist is collected too
    api.post(
        f"/api/v1/namespaces/{ns}/configmaps",
        json={"metadata": {"name": "orphan", "ownerReferences": [{**_owner(other), "uid": "no-such-uid"}]}},
    )
    eventually(lambda: api.get(f"/api/v1/namespaces/{ns}/configmaps/orphan").status_code == 404)
    # propagationPolicy=Orphan keeps dependents and strips the reference
    api.post(
        f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "kept", "ownerReferences": [_owner(other)]}}
    )
    api.request("DELETE", f"/api/v1/namespaces/{ns}/configmaps/other", json={"propagationPolicy": "Orphan"})
    time.sleep(0.1)
    kept = api.get(f"/api/v1/namespaces/{ns}/configmaps/kept").json()
    assert "ownerReferences" not in kept["metadata"]


def test_namespace_deletion_drains_and_removes_it(api: httpx.Client, ns: str) -> None:
    create_mv(api, ns, "in-ns")
    api.patch(mvs(ns, "in-ns"), json={"metadata": {"finalizers": ["x/y"]}}, headers=MERGE)
    api.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "c"}})
    assert api.delete(f"/api/v1/namespaces/{ns}").status_code == 200
    eventually(lambda: api.get(f"/api/v1/namespaces/{ns}/configmaps/c").status_code == 404)
    assert api.get(f"/api/v1/namespaces/{ns}").json()["status"]["phase"] == "Terminating"
    refused = api.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "d"}})
    assert refused.status_code == 403
    api.patch(mvs(ns, "in-ns"), json={"metadata": {"finalizers": []}}, headers=MERGE)
    eventually(lambda: api.get(f"/api/v1/namespaces/{ns}").status_code == 404)


# -- clients -----------------------------------------------------------------------------------
def test_kubectl_get_apply_delete(server: ApiServerProcess, tmp_path: Path, api: httpx.Client, ns: str) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server.url, namespace=ns)
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}

    def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [KUBECTL, *args], input=stdin, capture_output=True, text=True, env=env, timeout=60, check=False
        )

    sample = ROOT / "manifests" / "samples" / "modelversion-1.0.0.yaml"
    applied = kubectl("apply", "--validate=false", "-f", str(sample))
    assert applied.returncode == 0 and "created" in applied.stdout, applied.stderr
    assert "unchanged" in kubectl("apply", "--validate=false", "-f", str(sample)).stdout
    table = kubectl("get", "mv", "-A")
    assert table.returncode == 0, table.stderr
    header, *rows = (line.split() for line in table.stdout.splitlines())
    assert header[:5] == ["NAMESPACE", "NAME", "MODEL", "VERSION", "STAGE"] and header[-1] == "AGE"
    assert [ns, "breast-cancer-1-0-0", "breast-cancer", "Production"] in [row[:4] for row in rows]
    as_yaml = kubectl("get", "mv", "breast-cancer-1-0-0", "-o", "yaml")
    assert "uid:" in as_yaml.stdout and "testSize: 0.25" in as_yaml.stdout
    jsonpath = kubectl("get", "mv", "breast-cancer-1-0-0", "-o", "jsonpath={.spec.stage}")
    assert jsonpath.stdout == "Production"
    invalid = kubectl(
        "apply", "--validate=false", "-f", "-", stdin=sample.read_text().replace("testSize: 0.25", "testSize: 1.5")
    )
    assert invalid.returncode != 0 and "spec.training.testSize: Invalid value: 1.5" in invalid.stderr
    # without --validate=false kubectl finds fieldValidation in /openapi/v3 and lets the server validate
    unknown = sample.read_text().replace("  stage: Production", "  stage: Production\n  extraField: 1")
    strict = kubectl("apply", "-f", "-", stdin=unknown)
    assert strict.returncode != 0 and 'spec.extraField: unknown field "spec.extraField"' in strict.stderr
    warned = kubectl("apply", "--validate=warn", "-f", "-", stdin=unknown)
    assert warned.returncode == 0 and 'Warning: unknown field "spec.extraField"' in warned.stderr
    staged = kubectl("apply", "-f", "-", stdin=sample.read_text().replace("stage: Production", "stage: Staging"))
    assert "configured" in staged.stdout, staged.stderr
    assert api.get(mvs(ns, "breast-cancer-1-0-0")).json()["spec"]["stage"] == "Staging"
    assert "default" in kubectl("get", "ns").stdout
    deleted = kubectl("delete", "mv", "breast-cancer-1-0-0")
    assert deleted.returncode == 0 and "deleted" in deleted.stdout, deleted.stderr
    assert "No resources found" in kubectl("get", "mv").stderr


def test_kubernetes_python_client(server: ApiServerProcess, tmp_path: Path, ns: str) -> None:
    from kubernetes import client, config

    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server.url)
    api_client = config.new_client_from_config(str(kubeconfig))
    try:
        names = [n.metadata.name for n in client.CoreV1Api(api_client).list_namespace().items]
        assert "default" in names and ns in names
        custom = client.CustomObjectsApi(api_client)
        custom.create_namespaced_custom_object(GROUP, "v1alpha1", ns, "modelversions", mv_body("py"))
        listed = custom.list_namespaced_custom_object(GROUP, "v1alpha1", ns, "modelversions")
        assert [i["metadata"]["name"] for i in listed["items"]] == ["py"]
        cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm"), data={"a": "1"})
        created = client.CoreV1Api(api_client).create_namespaced_config_map(ns, cm)
        assert created.metadata.uid and created.metadata.resource_version
    finally:
        api_client.close()


def test_hundreds_of_objects_stay_fast(api: httpx.Client, ns: str) -> None:
    started = time.perf_counter()
    for i in range(300):
        response = api.post(mvs(ns), json=mv_body(f"bulk-{i:03d}"))
        assert response.status_code == 201
    created = time.perf_counter() - started
    listed = api.get(mvs(ns)).json()["items"]
    assert len(listed) == 300
    print(f"300 ModelVersions created in {created:.2f} s ({created / 300 * 1000:.1f} ms each)")


def test_imperative_kubectl_gets_a_clear_415(tmp_path) -> None:
    """kubectl's typed commands send protobuf; the emulator says what to do instead."""
    import subprocess
    import sys
    from pathlib import Path

    from modelops.sandbox.apiserver import spawn
    from modelops.sandbox.kubeconfig import write_kubeconfig
    from tests.conftest import ROOT

    server = spawn(ROOT / "crds")
    try:
        config = write_kubeconfig(tmp_path / "kubeconfig", server.url)
        kubectl = Path(sys.executable).with_name("kubectl")
        result = subprocess.run(
            [str(kubectl), "--kubeconfig", str(config), "create", "namespace", "ml"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert result.returncode != 0 and "kubectl apply -f" in result.stderr, result.stderr
    finally:
        server.stop()
