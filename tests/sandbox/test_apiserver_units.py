"""Unit tests of the API emulator's pure parts: patches, selectors, store history, tables, CEL, registry."""

from __future__ import annotations

import copy

import pytest

from modelops.api.openapi import apply_defaults, crd_schema, prune, validate
from modelops.sandbox.emulator import Catalogue, Registry, Store, read_crds
from modelops.sandbox.emulator.cel import CelValidator
from modelops.sandbox.emulator.errors import ApiError
from modelops.sandbox.emulator.patches import apply_patch, merge_patch, strategic_merge
from modelops.sandbox.emulator.selectors import parse_label_selector, selector_predicate
from modelops.sandbox.emulator.server import parse_route
from modelops.sandbox.emulator.tables import human_duration, jsonpath
from tests.conftest import ROOT, load_yaml_docs

CRDS = read_crds(ROOT / "crds")
MV = next(c for c in CRDS if c["spec"]["names"]["kind"] == "ModelVersion")
MV_SCHEMA = crd_schema(MV)


def _obj(labels: dict[str, str] | None = None, **meta: str) -> dict:
    return {"metadata": {"name": "x", "namespace": "ns", "labels": labels or {}, **meta}, "spec": {"a": 1}}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app=a", {"app": "a"}, True),
        ("app==a", {"app": "b"}, False),
        ("app!=a", {}, True),
        ("app!=a", {"app": "a"}, False),
        ("app in (a, b)", {"app": "b"}, True),
        ("app in (a,b),tier notin (web)", {"app": "a", "tier": "web"}, False),
        ("tier notin (web)", {}, True),
        ("app", {"app": ""}, True),
        ("!app", {"app": "x"}, False),
        ("!app", {}, True),
        ("app=a, !gone", {"app": "a"}, True),
        ("", {"any": "thing"}, True),
    ],
)
def test_label_selectors(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert selector_predicate(selector, None)(_obj(labels)) is expected


def test_field_selectors_and_bad_selectors() -> None:
    assert selector_predicate(None, "metadata.name=x,metadata.namespace==ns")(_obj())
    assert not selector_predicate(None, "metadata.name!=x")(_obj())
    with pytest.raises(ApiError) as err:
        parse_label_selector("app in a")
    assert err.value.status == 400
    with pytest.raises(ApiError):
        selector_predicate(None, "metadata.name")


def test_merge_patch_is_rfc7386_and_does_not_touch_the_original() -> None:
    original = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    snapshot = copy.deepcopy(original)
    assert merge_patch(original, {"a": {"b": None, "c": [3]}, "e": {"f": 1}}) == {
        "a": {"c": [3]},
        "d": 1,
        "e": {"f": 1},
    }
    assert original == snapshot


def test_strategic_merge_patch_merges_named_lists_and_honours_directives() -> None:
    deployment = {
        "metadata": {"finalizers": ["a"]},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "v1",
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                        },
                        {"name": "sidecar", "image": "s1"},
                    ]
                }
            }
        },
    }
    patch = {
        "metadata": {"finalizers": ["b"]},
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
                    "containers": [
                        {
                            "name": "app",
                            "image": "v2",
                            "env": [{"name": "B", "$patch": "delete"}, {"name": "C", "value": "3"}],
                        },
                    ],
                }
            }
        },
    }
    result = strategic_merge(deployment, patch)
    containers = result["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["sidecar", "app"]
    assert containers[1]["image"] == "v2"
    assert containers[1]["env"] == [{"name": "A", "value": "1"}, {"name": "C", "value": "3"}]
    assert result["metadata"]["finalizers"] == ["a", "b"]
    assert "$setElementOrder/containers" not in result["spec"]["template"]["spec"]
    assert strategic_merge({"a": {"x": 1, "y": 2}}, {"a": {"$patch": "replace", "z": 3}}) == {"a": {"z": 3}}
    assert strategic_merge({"a": {"x": 1}, "b": 1}, {"a": {"$patch": "delete"}}) == {"b": 1}


def test_patch_types() -> None:
    original = {"metadata": {"resourceVersion": "5"}, "spec": {"x": 1}}
    assert apply_patch(
        "application/json-patch+json", original, [{"op": "add", "path": "/spec/y", "value": 2}], strategic=True
    )["spec"] == {"x": 1, "y": 2}
    with pytest.raises(ApiError) as err:
        apply_patch(
            "application/json-patch+json",
            original,
            [{"op": "test", "path": "/metadata/resourceVersion", "value": "4"}],
            strategic=True,
        )
    assert err.value.status == 422
    with pytest.raises(ApiError) as err:
        apply_patch("application/strategic-merge-patch+json", original, {}, strategic=False)
    assert err.value.status == 415
    with pytest.raises(ApiError) as err:
        apply_patch("application/apply-patch+yaml", original, {}, strategic=True)
    assert err.value.status == 415
    with pytest.raises(ApiError) as err:
        apply_patch("application/json-patch+json", original, {"spec": {}}, strategic=True)
    assert err.value.status == 400


def test_store_history_resumes_and_expires() -> None:
    store = Store(history=3)
    key = ("", "configmaps")
    for i in range(5):
        store.put(key, {"metadata": {"name": f"c{i}", "namespace": "ns", "uid": f"u{i}"}}, None)
    assert store.resource_version == 5
    assert [e.rv for e in store.events_since(key, 3) or []] == [4, 5]
    assert store.events_since(key, 1) is None  # rv 2 was dropped from the history
    assert store.events_since(("", "secrets"), 0) == []


def test_routes() -> None:
    assert parse_route("/api/v1/namespaces").plural == "namespaces"  # type: ignore[union-attr]
    ns = parse_route("/api/v1/namespaces/foo/status")
    assert ns is not None and (ns.plural, ns.name, ns.subresource, ns.namespace) == (
        "namespaces",
        "foo",
        "status",
        None,
    )
    mv = parse_route("/apis/ml.smarthr360.io/v1alpha1/namespaces/a/modelversions/b/status")
    assert mv is not None and (mv.group, mv.namespace, mv.plural, mv.name, mv.subresource) == (
        "ml.smarthr360.io",
        "a",
        "modelversions",
        "b",
        "status",
    )
    assert parse_route("/apis") == parse_route("/apis/")
    assert parse_route("/version") is None


def test_jsonpath_and_durations() -> None:
    obj = {"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]}}
    assert jsonpath(obj, '.status.conditions[?(@.type=="Ready")].status') == "True"
    assert jsonpath(obj, ".status.conditions[0].type") == "A"
    assert jsonpath(obj, ".status.missing.x") is None
    assert [human_duration(s) for s in (5, 150, 700, 3 * 3600 + 60, 50 * 3600)] == [
        "5s",
        "2m30s",
        "11m",
        "3h1m",
        "2d2h",
    ]


def test_prune_defaults_and_schema_messages() -> None:
    mv = load_yaml_docs(ROOT / "manifests" / "samples" / "modelversion-1.0.0.yaml")[0]
    mv["spec"]["bogus"] = 1
    mv["spec"]["training"]["hyperparameters"]["anything"] = {"kept": True}  # preserve-unknown-fields
    del mv["spec"]["stage"]
    assert prune(MV_SCHEMA, mv) == ["spec.bogus"]
    assert mv["spec"]["training"]["hyperparameters"]["anything"] == {"kept": True}
    apply_defaults(MV_SCHEMA, mv)
    assert mv["spec"]["stage"] == "Development"
    mv["spec"]["training"]["testSize"] = 1.5
    [error] = validate(MV_SCHEMA, mv)
    assert str(error) == (
        "spec.training.testSize: Invalid value: 1.5: spec.training.testSize in body should be less than 1"
    )


def test_cel_rules_and_transition_rules() -> None:
    cel = CelValidator()
    spec_schema = MV_SCHEMA["properties"]["spec"]
    both = {"model": "m", "version": "1.0.0", "versionBump": "minor", "training": {}}
    [error] = cel.validate(spec_schema, both, prefix="spec")
    assert error.field == "spec.version" and "exactly one of" in error.message
    ok = {"model": "m", "version": "1.0.0", "training": {}}
    assert cel.validate(spec_schema, ok, prefix="spec") == []
    changed = {**ok, "version": "1.0.1"}
    assert cel.validate(spec_schema, changed, ok, prefix="spec") == []  # transition rules only on update
    [error] = cel.validate(spec_schema, changed, ok, prefix="spec", update=True)
    assert error.reason == "FieldValueForbidden" and error.message.startswith("Forbidden: spec.version is immutable")
    # a rule celpy cannot evaluate (Kubernetes' quantity library) is skipped, not failed
    schema = {"type": "object", "x-kubernetes-validations": [{"rule": "quantity(self.q).isLessThan(quantity('1'))"}]}
    assert cel.validate(schema, {"q": "2"}) == []


def test_registry_without_http() -> None:
    registry = Registry(Catalogue(), Store())
    registry.bootstrap(CRDS)
    rt = registry.catalogue.lookup("ml.smarthr360.io", "v1alpha1", "modelversions")
    assert rt is not None and rt.status and rt.is_custom
    body = {
        "metadata": {"generateName": "mv-"},
        "spec": {"model": "m", "version": "1.0.0", "training": {"data": {"uri": "x", "target": "y"}}},
    }
    obj, warnings = registry.create(rt, "v1alpha1", "default", body)
    assert obj["metadata"]["name"].startswith("mv-") and len(obj["metadata"]["name"]) == 8
    assert warnings == [] and obj["metadata"]["generation"] == 1
    with pytest.raises(ApiError) as err:
        registry.create(rt, "v1alpha1", "missing", body)
    assert err.value.status == 404 and err.value.message == 'namespaces "missing" not found'


async def test_in_process_emulator_with_a_kmock_reaction_for_fault_injection() -> None:
    import aiohttp
    import kmock

    from modelops.sandbox.emulator import ApiEmulator

    emulator = ApiEmulator(crds=CRDS, journal_limit=16)
    async with emulator, kmock.Server(emulator) as server, aiohttp.ClientSession(str(server.url)) as client:
        path = "/api/v1/namespaces/default/configmaps"
        async with client.post(path, json={"metadata": {"name": "a"}}) as response:
            assert response.status == 201
        emulator["post", kmock.resource("", "v1", "configmaps")] << 503  # a user reaction wins
        async with client.post(path, json={"metadata": {"name": "b"}}) as response:
            assert response.status == 503
        async with client.get(path) as response:  # other requests are still served by the emulator
            assert [i["metadata"]["name"] for i in (await response.json())["items"]] == ["a"]
        for _ in range(20):
            async with client.get("/version"):
                pass
        assert len(emulator._requests) == 16  # the journal is bounded
