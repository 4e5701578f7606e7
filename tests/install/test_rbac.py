"""RBAC is derived from the code (modelops.rbac), carried by the chart and the kustomize base, and least-privilege."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

from modelops import rbac
from modelops.clients import kube
from tests.install.helpers import ALL_FEATURES, ROOT, allows, find, kustomize, policy_rules, render

WATCH_NAMESPACES = ALL_FEATURES["watchNamespaces"]


@functools.cache
def _calls() -> tuple[rbac.KubeCall, ...]:
    return tuple(rbac.operator_calls())


@functools.cache
def _watches() -> tuple[rbac.KopfWatch, ...]:
    return tuple(rbac.kopf_watches())


def _resource(call: rbac.KubeCall) -> str:
    return call.resource.plural + (f"/{call.subresource}" if call.subresource else "")


# -- the generated files ------------------------------------------------------------------------


def test_generated_rbac_files_are_not_stale(tmp_path: Path) -> None:
    assert rbac.main(["--check", "--root", str(ROOT)]) == 0, "run `make generate`"
    # and the check really detects a difference
    assert rbac.main(["--write", "--root", str(tmp_path)]) == 0
    (tmp_path / rbac.KUSTOMIZE_RBAC).write_text((tmp_path / rbac.KUSTOMIZE_RBAC).read_text() + "# edited\n")
    assert rbac.main(["--check", "--root", str(tmp_path)]) == 1


def test_client_methods_map_http_to_rbac_verbs() -> None:
    methods = rbac.client_methods()
    assert {m: methods[m].verb for m in methods} == {
        "get": "get",
        "list": "list",
        "create": "create",
        "patch": "patch",
        "replace": "update",
        "delete": "delete",
    }
    assert methods["patch"].subresource_param == "subresource"


def test_derivation_finds_the_calls_we_know_about() -> None:
    calls = {(c.verb, c.resource.plural, c.subresource) for c in _calls()}
    # a few calls read straight from reconcile/: status writes, the training Job, serving deletes
    assert ("patch", "modelversions", "status") in calls
    assert ("patch", "modelmonitors", "status") in calls
    assert ("create", "jobs", None) in calls
    assert ("delete", "deployments", None) in calls
    assert ("list", "modelversions", None) in calls
    # children.remove resolves its kind argument through the literal loop in reconcile/model.py
    deleted = {c.resource.plural for c in _calls() if c.verb == "delete"}
    assert "modelversions" not in deleted  # the operator never deletes what users own
    assert "jobs" in deleted  # only a failed training Job, when spec.training changed (retraining)
    assert not any(c.module.startswith("sandbox/") for c in _calls())


def test_kopf_watches_come_from_the_registered_handlers() -> None:
    watched: dict[tuple[str, str], set[str]] = {}
    for w in _watches():  # several handlers may watch one resource (e.g. changes and an index)
        watched.setdefault((w.group, w.plural), set()).update(w.verbs)
    assert watched[("ml.smarthr360.io", "modelversions")] == {"list", "watch", "patch"}
    assert watched[("ml.smarthr360.io", "modelmonitors")] == {"list", "watch", "patch"}
    assert watched[("batch", "jobs")] == {"list", "watch"}
    assert watched[("apps", "deployments")] == {"list", "watch"}


# -- the analyzer on synthetic code: it resolves what it can and refuses what it cannot -----------

KUBE_IMPORT = "from ..clients.kube import BY_KIND, DEPLOYMENTS, JOBS, SERVICES, KubeClient\n"


def _analyze(source: str, extra: dict[str, str] | None = None) -> set[tuple[str, str, str | None]]:
    sources = {"reconcile/x.py": KUBE_IMPORT + source, **(extra or {})}
    calls = rbac.CallAnalyzer(sources, "modelops", rbac.client_methods()).calls()
    return {(c.verb, c.resource.plural, c.subresource) for c in calls}


def test_analyzer_resolves_constants_loops_parameters_and_subresources() -> None:
    found = _analyze(
        "async def a(ctx):\n"
        "    await ctx.kube.replace(JOBS, 'ns', 'n', {})\n"
        "    for kind in ('Service', 'Deployment'):\n"
        "        await ctx.kube.delete(BY_KIND[kind], 'ns', 'n')\n"
        "async def helper(k: KubeClient, res, sub=None):\n"
        "    await k.patch(res, 'ns', 'n', {}, subresource=sub)\n"
        "async def b(ctx):\n"
        "    await helper(ctx.kube, DEPLOYMENTS, sub='scale')\n"
        "    await helper(ctx.kube, res=SERVICES)\n"
    )
    assert found == {
        ("update", "jobs", None),
        ("delete", "services", None),
        ("delete", "deployments", None),
        ("patch", "deployments", "scale"),
        ("patch", "services", "scale"),
        ("patch", "deployments", None),
        ("patch", "services", None),
    }


def test_analyzer_follows_helpers_across_modules() -> None:
    helper = (
        "from ..clients.kube import BY_KIND\n"
        "async def remove(kube, kind):\n"
        "    await kube.delete(BY_KIND[kind], 'ns', 'n')\n"
    )
    found = _analyze(
        "from . import helper\nasync def a(ctx):\n    await helper.remove(ctx.kube, 'Job')\n",
        {"reconcile/helper.py": helper},
    )
    assert found == {("delete", "jobs", None)}


def test_analyzer_falls_back_to_every_known_kind_for_an_unknown_key() -> None:
    found = _analyze("async def a(kube, desired):\n    await kube.get(BY_KIND[desired['kind']], 'ns', 'n')\n")
    assert found == {("get", r.plural, None) for r in kube.BY_KIND.values()}


@pytest.mark.parametrize(
    "source",
    [
        # a resource that is not a Resource constant
        "async def a(ctx, x):\n    await ctx.kube.get(x.res, 'ns', 'n')\n",
        # a parameter whose callers cannot be found
        "async def a(ctx, res):\n    await ctx.kube.get(res, 'ns', 'n')\n",
        # a subresource that is not a literal
        "async def a(ctx, body):\n    await ctx.kube.patch(JOBS, 'ns', 'n', {}, subresource=body['s'])\n",
    ],
)
def test_analyzer_refuses_calls_it_cannot_resolve(source: str) -> None:
    with pytest.raises(rbac.RbacDerivationError):
        _analyze(source)


# -- the rules in the chart and in the kustomize base --------------------------------------------


def _check_covers(rules: list[dict], where: str) -> None:
    missing = [
        f"{c.verb} {c.resource.group}/{_resource(c)} ({c.module}:{c.line})"
        for c in _calls()
        if c.resource not in rbac.LEADER_ELECTION_RESOURCES  # a Role in the operator's namespace
        and not allows(rules, c.resource.group, _resource(c), c.verb)
    ]
    missing += [
        f"{v} {w.group}/{w.plural} (kopf handler {w.handler})"
        for w in _watches()
        for v in w.verbs
        if not allows(rules, w.group, w.plural, v)
    ]
    assert not missing, f"{where} lacks: {missing}"
    assert allows(rules, "", "events", "create"), f"{where}: kopf cannot post Events"


def test_chart_cluster_mode_covers_every_call_and_watch() -> None:
    objs = render()
    rules = policy_rules(objs, "ClusterRole")
    _check_covers(rules, "chart ClusterRole")
    assert allows(rules, "apiextensions.k8s.io", "customresourcedefinitions", "watch")
    assert not allows(rules, "coordination.k8s.io", "leases", "patch"), "the Lease only in the operator's namespace"
    _check_leader_election(objs)
    binding = find(objs, "ClusterRoleBinding")[0]
    assert binding["subjects"][0]["name"] == find(objs, "ServiceAccount")[0]["metadata"]["name"]


def test_chart_namespaced_mode_uses_roles_per_namespace() -> None:
    objs = render(ALL_FEATURES)
    for ns in WATCH_NAMESPACES:
        rules = policy_rules(objs, "Role", ns)
        _check_covers(rules, f"chart Role in {ns}")
        assert not allows(rules, "coordination.k8s.io", "leases", "patch"), "no Lease rights where models live"
        bindings = [b for b in find(objs, "RoleBinding") if b["metadata"]["namespace"] == ns]
        assert len(bindings) == 1 and bindings[0]["subjects"][0]["namespace"] == "modelops-system"
    cluster = policy_rules(objs, "ClusterRole")
    assert allows(cluster, "apiextensions.k8s.io", "customresourcedefinitions", "list")
    assert allows(cluster, "", "namespaces", "watch")
    # nothing namespaced leaks into the cluster-wide role
    assert not any(allows(cluster, c.resource.group, _resource(c), c.verb) for c in _calls())


def _check_leader_election(objs: list[dict[str, Any]], namespace: str = "modelops-system") -> None:
    rules = policy_rules(objs, "Role", namespace)
    for verb in ("get", "create", "patch"):
        assert allows(rules, "coordination.k8s.io", "leases", verb), verb
    binding = next(b for b in find(objs, "RoleBinding") if b["metadata"]["name"].endswith("-leader-election"))
    assert binding["metadata"]["namespace"] == namespace and binding["subjects"][0]["namespace"] == namespace


def test_every_install_can_elect_a_leader() -> None:
    for values in ({}, {"operator": {"replicas": 3}}, ALL_FEATURES):
        _check_leader_election(render(values))
    _check_leader_election(kustomize(ROOT / "manifests" / "default"))


def test_kustomize_base_has_the_same_rules_as_the_chart() -> None:
    objs = kustomize(ROOT / "manifests" / "default")
    rules = policy_rules(objs, "ClusterRole")
    _check_covers(rules, "manifests/base ClusterRole")
    assert sorted(map(str, rules)) == sorted(map(str, policy_rules(render(), "ClusterRole")))
    binding = find(objs, "ClusterRoleBinding")[0]
    sa = find(objs, "ServiceAccount")[0]["metadata"]
    assert (binding["subjects"][0]["name"], binding["subjects"][0]["namespace"]) == (sa["name"], sa["namespace"])


@pytest.mark.parametrize("source", ["chart-default", "chart-all", "kustomize"])
def test_rules_are_least_privilege(source: str) -> None:
    if source == "kustomize":
        objs = kustomize(ROOT / "manifests" / "default")
    else:
        objs = render(ALL_FEATURES if source == "chart-all" else None)
    rules = [r for kind in ("ClusterRole", "Role") for r in policy_rules(objs, kind)]
    assert rules
    for rule in rules:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(key, []), f"wildcard in {rule}"
        assert "secrets" not in rule["resources"], "the operator reads no Secret"
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])
        assert "nonResourceURLs" not in rule and "resourceNames" not in rule
