"""The operator's least-privilege RBAC rules, derived from its code: one list for every installer.

``python -m modelops.rbac --write`` regenerates the two files that carry the rules, and
``--check`` exits 1 when they are stale (``make generate``; a test runs the check):

* ``helm/modelops/templates/_rbac_rules.tpl``: named templates with the rules and no values,
  included by the chart's ClusterRole/Role templates;
* ``manifests/base/rbac.yaml``: the kustomize base's ClusterRole and ClusterRoleBinding.

Where the rules come from (nothing here lists a resource the operator touches by hand):

1. **The operator's own API calls.** ``clients/kube.py`` is the only Kubernetes I/O. Each public
   ``KubeClient`` method's HTTP method and URL shape give its RBAC verb (``GET`` of an object is
   ``get``, of a collection ``list``; ``POST`` create, ``PATCH`` patch, ``PUT`` update, ``DELETE``
   delete). Every call of those methods in the package (the local sandbox excluded: it never runs
   in a cluster) is found in the syntax tree, and its resource argument is resolved to the
   ``Resource`` constants of ``clients/kube.py``: directly, through local assignments and ``for``
   loops over literals, through the callers of a helper that takes the resource (or a kind name)
   as a parameter, and through ``BY_KIND[...]``. A ``BY_KIND`` lookup whose key cannot be
   resolved stands for every kind in ``BY_KIND`` (an over-approximation inside the declared set,
   never a wildcard). A call whose resource cannot be resolved at all is an error, so a new call
   can never be silently left out. A ``subresource="status"`` argument becomes ``<plural>/status``.
2. **kopf's watches.** The handlers are registered into a fresh ``kopf.OperatorRegistry`` and
   read back: resources with changing handlers (create/update/resume/delete) or timers need
   ``list, watch, patch`` (kopf patches finalizers and its progress annotations); resources with
   event handlers only need ``list, watch``.
3. **kopf's framework needs** (from kopf's source, see :data:`KOPF_RULES`): posting Events,
   observing CRDs, and observing namespaces in namespaced mode.

Calls on the leader-election Lease (``leader.py``) form their own rule set, granted only in the
operator's own namespace (a Role), not in the namespaces it manages.

The operator reads no Secret: child pods get MLflow credentials through ``secretKeyRef``.
"""

from __future__ import annotations

import argparse
import ast
import functools
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .clients import kube

PACKAGE_DIR = Path(__file__).resolve().parent
#: Repository root in a source checkout (where --write/--check look by default).
DEFAULT_ROOT = PACKAGE_DIR.parent.parent
HELM_RULES = Path("helm/modelops/templates/_rbac_rules.tpl")
KUSTOMIZE_RBAC = Path("manifests/base/rbac.yaml")
#: Name of the ServiceAccount, ClusterRole and ClusterRoleBinding of the kustomize base.
KUSTOMIZE_NAME = "modelops-operator"
#: Namespace of the kustomize base's operator.
KUSTOMIZE_NAMESPACE = "modelops-system"

#: Canonical verb order in generated rules.
VERB_ORDER = ("get", "list", "watch", "create", "update", "patch", "delete")
#: HTTP method → RBAC verb (GET is get or list, decided by the URL shape).
HTTP_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}

#: Package paths whose calls never run in a cluster (the sandbox emulates one locally).
EXCLUDED = ("sandbox/", "clients/kube.py", "rbac.py")

#: Rule sets. ``namespaced`` rules go into a ClusterRole (all namespaces) or into one Role per
#: watched namespace; the others are always cluster-scoped or depend on the install mode.
RULE_SETS = ("namespaced", "cluster", "namespacesWatch", "leaderElection")
#: Resources whose rules go to the ``leaderElection`` set (the operator's own namespace only).
LEADER_ELECTION_RESOURCES = (kube.LEASES,)


class RbacDerivationError(Exception):
    """The code contains a Kubernetes call whose resource or verb cannot be derived."""


@dataclass(frozen=True, order=True)
class Rule:
    """One PolicyRule for a single resource, with the reason it exists (written as a comment)."""

    group: str
    resource: str
    verbs: tuple[str, ...]
    why: str = field(compare=False)

    def as_policy_rule(self) -> dict[str, Any]:
        """The Kubernetes ``PolicyRule`` dict."""
        return {"apiGroups": [self.group], "resources": [self.resource], "verbs": list(self.verbs)}


#: What kopf itself calls, besides the resources it watches (kopf 1.45 source):
#: ``_core/engines/posting.py`` posts core/v1 Events; ``_core/reactor/observation.py`` lists and
#: watches CRDs always, and namespaces only when not cluster-wide (to resolve namespace patterns;
#: cluster-wide it uses no namespace listing). kopf's peering is not used (the operator runs
#: standalone; replicas elect a leader through a Lease, see leader.py).
KOPF_RULES: dict[str, list[Rule]] = {
    "namespaced": [
        Rule("", "events", ("create",), "kopf: posts Events about handlers and the operator's condition transitions"),
    ],
    "cluster": [
        Rule(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            ("list", "watch"),
            "kopf: observes CRDs to notice our resources appear or change",
        ),
    ],
    "namespacesWatch": [
        Rule("", "namespaces", ("list", "watch"), "kopf: namespaced mode resolves the watched namespaces"),
    ],
}


# --------------------------------------------------------------------------------------------
# KubeClient methods → verbs.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientMethod:
    """A public KubeClient method: its RBAC verb and where its subresource argument is."""

    name: str
    verb: str
    params: tuple[str, ...]
    subresource_param: str | None = None


def client_methods(source: str | None = None) -> dict[str, ClientMethod]:
    """Read ``KubeClient``'s public methods and the RBAC verb of each from ``clients/kube.py``.

    Each method must call ``self._run("<HTTP method>", res.path(...))``; ``GET`` with a name
    argument in ``path`` is ``get``, without one ``list``. A third ``path`` argument that is one of
    the method's parameters is its subresource parameter.
    """
    tree = ast.parse(source if source is not None else Path(kube.__file__).read_text())
    cls = next(
        (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "KubeClient"),
        None,
    )
    if cls is None:
        raise RbacDerivationError("clients/kube.py defines no KubeClient class")
    methods: dict[str, ClientMethod] = {}
    for fn in cls.body:
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) or fn.name.startswith("_"):
            continue
        params = tuple(a.arg for a in fn.args.args[1:])
        for node in ast.walk(fn):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "_run"
                and len(node.args) >= 2
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[1], ast.Call)
                and isinstance(node.args[1].func, ast.Attribute)
                and node.args[1].func.attr == "path"
            ):
                continue
            http = str(node.args[0].value).upper()
            path_args = node.args[1].args
            if http == "GET":
                verb = "get" if len(path_args) >= 2 else "list"
            elif http in HTTP_VERBS:
                verb = HTTP_VERBS[http]
            else:
                raise RbacDerivationError(f"KubeClient.{fn.name}: unknown HTTP method {http}")
            sub = path_args[2] if len(path_args) >= 3 else None
            sub_param = sub.id if isinstance(sub, ast.Name) and sub.id in params else None
            methods[fn.name] = ClientMethod(fn.name, verb, params, sub_param)
            break
    return methods


# --------------------------------------------------------------------------------------------
# Call-site analysis.
# --------------------------------------------------------------------------------------------


@dataclass
class _Module:
    name: str  # dotted, e.g. modelops.reconcile.children
    path: str  # relative to the package, e.g. reconcile/children.py
    tree: ast.Module
    imports: dict[str, tuple[str, str | None]]  # local name → (module, attribute or None)
    functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef]
    parents: dict[ast.AST, ast.AST]
    calls: list[ast.Call]


@dataclass(frozen=True)
class KubeCall:
    """One resolved call of a KubeClient method."""

    module: str
    line: int
    verb: str
    resource: kube.Resource
    subresource: str | None


_ANY = object()  # "any value" marker for string resolution


def _absolute(anchor: str, level: int, target: str | None) -> str:
    """The absolute module named by ``from <level dots><target> import ...`` inside ``anchor``."""
    if not level:
        return target or ""
    parts = anchor.split(".")[:-level]
    return ".".join([*parts, target] if target else parts)


class CallAnalyzer:
    """Finds every KubeClient call in a package and resolves its verb and resource.

    Args:
        sources: ``{relative path: source}`` of the package's modules (e.g. ``reconcile/x.py``).
        package: the package's dotted name.
        methods: the KubeClient methods (see :func:`client_methods`).
    """

    def __init__(self, sources: Mapping[str, str], package: str, methods: Mapping[str, ClientMethod]) -> None:
        self.package = package
        self.methods = dict(methods)
        self.constants = {n: v for n, v in vars(kube).items() if isinstance(v, kube.Resource)}
        self.kube_module = f"{package}.clients.kube"
        self.modules: dict[str, _Module] = {}
        for path, source in sorted(sources.items()):
            name = package + "." + path.removesuffix(".py").replace("/", ".")
            name = name.removesuffix(".__init__")
            anchor = name + ".__init__" if path.endswith("__init__.py") else name
            tree = ast.parse(source, filename=path)
            imports: dict[str, tuple[str, str | None]] = {}
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom):
                    origin = _absolute(anchor, node.level, node.module)
                    for alias in node.names:
                        imports[alias.asname or alias.name] = (origin, alias.name)
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        imports[alias.asname or alias.name.split(".")[0]] = (alias.name, None)
            functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
            parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
            calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
            self.modules[name] = _Module(name, path, tree, imports, functions, parents, calls)

    # -- helpers -------------------------------------------------------------------------------

    def _enclosing(self, mod: _Module, node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        cur: ast.AST | None = node
        while cur is not None:
            cur = mod.parents.get(cur)
            if isinstance(cur, ast.FunctionDef | ast.AsyncFunctionDef):
                return cur
        return None

    def _kube_name(self, mod: _Module, name: str) -> str | None:
        """The clients.kube attribute a local name refers to (``MODELVERSIONS``, ``BY_KIND``)."""
        origin = mod.imports.get(name)
        if origin and origin[0] == self.kube_module and origin[1]:
            return origin[1]
        return None

    def _is_kube_module(self, mod: _Module, name: str) -> bool:
        origin = mod.imports.get(name)
        if origin is None:
            return False
        full = origin[0] + ("." + origin[1] if origin[1] else "")
        return full == self.kube_module

    def _is_receiver(self, expr: ast.expr, fn: ast.FunctionDef | ast.AsyncFunctionDef | None) -> bool:
        """Whether ``expr`` is a KubeClient: ``kube``, ``<x>.kube`` or a parameter typed KubeClient."""
        if isinstance(expr, ast.Attribute):
            return expr.attr == "kube"
        if isinstance(expr, ast.Name):
            if expr.id == "kube":
                return True
            if fn is not None:
                for arg in [*fn.args.args, *fn.args.kwonlyargs]:
                    if arg.arg == expr.id and arg.annotation is not None:
                        return "KubeClient" in ast.unparse(arg.annotation)
        return False

    def _assignments(self, fn: ast.AST, name: str) -> list[ast.expr]:
        values: list[ast.expr] = []
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign):
                if any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                    values.append(node.value)
            elif isinstance(node, ast.AnnAssign | ast.AugAssign):
                if isinstance(node.target, ast.Name) and node.target.id == name and node.value is not None:
                    values.append(node.value)
        return values

    def _loop_literals(self, fn: ast.AST, name: str) -> list[ast.expr] | None:
        """Elements of literal tuples/lists iterated by ``for <name> in (...)``; None if not a loop var."""
        found: list[ast.expr] | None = None
        for node in ast.walk(fn):
            if isinstance(node, ast.For | ast.AsyncFor) and isinstance(node.target, ast.Name):
                if node.target.id != name:
                    continue
                found = found or []
                if isinstance(node.iter, ast.Tuple | ast.List):
                    found.extend(node.iter.elts)
                else:
                    found.append(node.iter)  # unresolvable element source
        return found

    def _param_index(self, fn: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> int | None:
        names = [a.arg for a in [*fn.args.posonlyargs, *fn.args.args]]
        if name in names:
            return names.index(name)
        if name in [a.arg for a in fn.args.kwonlyargs]:
            return -1
        return None

    def _callers(self, mod: _Module, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[tuple[_Module, ast.Call]]:
        """Calls of module-level function ``fn`` anywhere in the package (by import resolution)."""
        for other in self.modules.values():
            for node in other.calls:
                func = node.func
                if isinstance(func, ast.Name):
                    if other is mod and func.id == fn.name:
                        yield other, node
                    elif other.imports.get(func.id) == (mod.name, fn.name):
                        yield other, node
                elif isinstance(func, ast.Attribute) and func.attr == fn.name and isinstance(func.value, ast.Name):
                    origin = other.imports.get(func.value.id)
                    if origin and (origin[0] + ("." + origin[1] if origin[1] else "")) == mod.name:
                        yield other, node

    def _argument(self, call: ast.Call, fn: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> ast.expr | None:
        for kw in call.keywords:
            if kw.arg == name:
                return kw.value
        index = self._param_index(fn, name)
        if index is not None and index >= 0 and index < len(call.args):
            if any(isinstance(a, ast.Starred) for a in call.args[: index + 1]):
                return None
            return call.args[index]
        return None

    def _param_values(
        self, mod: _Module, fn: ast.FunctionDef | ast.AsyncFunctionDef, name: str
    ) -> list[tuple[_Module, ast.expr, ast.AST]] | None:
        """Arguments passed for parameter ``name`` at every call site; None when one is unknowable."""
        if fn.name not in mod.functions or mod.functions[fn.name] is not fn:
            return None  # nested functions and methods: callers are not resolved
        values: list[tuple[_Module, ast.expr, ast.AST]] = []
        for caller_mod, call in self._callers(mod, fn):
            arg = self._argument(call, fn, name)
            if arg is None:
                default = self._default(fn, name)
                if default is None:
                    return None
                values.append((mod, default, fn))
            else:
                values.append((caller_mod, arg, call))
        return values or None

    def _default(self, fn: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> ast.expr | None:
        args = [*fn.args.posonlyargs, *fn.args.args]
        defaults = fn.args.defaults
        offset = len(args) - len(defaults)
        for i, a in enumerate(args):
            if a.arg == name and i >= offset:
                return defaults[i - offset]
        for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults, strict=True):
            if a.arg == name:
                return d
        return None

    # -- resolution ----------------------------------------------------------------------------

    def resources(self, mod: _Module, expr: ast.expr, at: ast.AST, depth: int = 0) -> set[kube.Resource]:
        """The Resource constants ``expr`` (seen at node ``at``) can evaluate to."""
        where = f"{mod.path}:{getattr(expr, 'lineno', '?')}"
        if depth > 6:
            raise RbacDerivationError(f"{where}: resource argument too indirect: {ast.unparse(expr)}")
        if isinstance(expr, ast.Name):
            attr = self._kube_name(mod, expr.id)
            if attr in self.constants:
                return {self.constants[attr]}
            fn = self._enclosing(mod, at)
            if fn is not None:
                assigned = self._assignments(fn, expr.id)
                if assigned:
                    out: set[kube.Resource] = set()
                    for value in assigned:
                        out |= self.resources(mod, value, value, depth + 1)
                    return out
                if self._param_index(fn, expr.id) is not None:
                    values = self._param_values(mod, fn, expr.id)
                    if values is None:
                        raise RbacDerivationError(
                            f"{where}: cannot resolve parameter {expr.id!r} of {fn.name}() from its callers"
                        )
                    out = set()
                    for caller_mod, value, node in values:
                        out |= self.resources(caller_mod, value, node, depth + 1)
                    return out
        if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
            if self._is_kube_module(mod, expr.value.id) and expr.attr in self.constants:
                return {self.constants[expr.attr]}
        if isinstance(expr, ast.Subscript):
            base = expr.value
            is_by_kind = (isinstance(base, ast.Name) and self._kube_name(mod, base.id) == "BY_KIND") or (
                isinstance(base, ast.Attribute)
                and isinstance(base.value, ast.Name)
                and self._is_kube_module(mod, base.value.id)
                and base.attr == "BY_KIND"
            )
            if is_by_kind:
                kinds = self.strings(mod, expr.slice, at, depth + 1)
                if kinds is None:
                    return set(kube.BY_KIND.values())
                unknown = sorted(str(k) for k in kinds if k not in kube.BY_KIND)
                if unknown:
                    raise RbacDerivationError(f"{where}: kinds {unknown} are not in clients.kube.BY_KIND")
                return {kube.BY_KIND[k] for k in kinds if k is not None}
        raise RbacDerivationError(f"{where}: cannot resolve the resource of a Kubernetes call: {ast.unparse(expr)}")

    def strings(self, mod: _Module, expr: ast.expr, at: ast.AST, depth: int = 0) -> set[str | None] | None:
        """The string (or literal None) values ``expr`` can take, or None when any value is possible."""
        if depth > 6:
            return None
        if isinstance(expr, ast.Constant):
            return {expr.value} if isinstance(expr.value, str) or expr.value is None else None
        if isinstance(expr, ast.Name):
            fn = self._enclosing(mod, at)
            if fn is None:
                return None
            out: set[str | None] = set()
            loop = self._loop_literals(fn, expr.id)
            assigned = self._assignments(fn, expr.id)
            if loop is not None or assigned:
                for value in [*(loop or []), *assigned]:
                    got = self.strings(mod, value, value, depth + 1)
                    if got is None:
                        return None
                    out |= got
                return out
            if self._param_index(fn, expr.id) is not None:
                values = self._param_values(mod, fn, expr.id)
                if values is None:
                    return None
                for caller_mod, value, node in values:
                    got = self.strings(caller_mod, value, node, depth + 1)
                    if got is None:
                        return None
                    out |= got
                return out
        return None

    def _subresources(self, mod: _Module, call: ast.Call, method: ClientMethod) -> set[str | None]:
        if method.subresource_param is None:
            return {None}
        arg: ast.expr | None = None
        for kw in call.keywords:
            if kw.arg == method.subresource_param:
                arg = kw.value
        index = method.params.index(method.subresource_param)
        if arg is None and index < len(call.args):
            arg = call.args[index]
        if arg is None or (isinstance(arg, ast.Constant) and arg.value is None):
            return {None}
        values = self.strings(mod, arg, call)
        if values is None:
            raise RbacDerivationError(f"{mod.path}:{call.lineno}: cannot resolve the subresource {ast.unparse(arg)}")
        return values

    def calls(self) -> list[KubeCall]:
        """Every KubeClient call in the package, resolved."""
        found: list[KubeCall] = []
        for mod in self.modules.values():
            for node in mod.calls:
                if not (isinstance(node.func, ast.Attribute) and node.func.attr in self.methods and node.args):
                    continue
                fn = self._enclosing(mod, node)
                first = node.args[0]
                direct = isinstance(first, ast.Name) and self._kube_name(mod, first.id) in self.constants
                if not (direct or self._is_receiver(node.func.value, fn)):
                    continue
                method = self.methods[node.func.attr]
                resources = self.resources(mod, first, node)
                for sub in sorted(self._subresources(mod, node, method), key=lambda s: s or ""):
                    for res in sorted(resources, key=lambda r: (r.group, r.plural)):
                        found.append(KubeCall(mod.path, node.lineno, method.verb, res, sub))
        return found


def package_sources(package_dir: Path = PACKAGE_DIR) -> dict[str, str]:
    """``{relative path: source}`` of the package's modules that run in a cluster."""
    out: dict[str, str] = {}
    for path in sorted(package_dir.rglob("*.py")):
        rel = path.relative_to(package_dir).as_posix()
        if any(rel.startswith(ex) if ex.endswith("/") else rel == ex for ex in EXCLUDED):
            continue
        out[rel] = path.read_text()
    return out


def operator_calls(package_dir: Path = PACKAGE_DIR) -> list[KubeCall]:
    """Every Kubernetes call the operator's code makes, with verb and resource."""
    return CallAnalyzer(package_sources(package_dir), __package__ or "modelops", client_methods()).calls()


# --------------------------------------------------------------------------------------------
# kopf's watches.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KopfWatch:
    """A resource kopf watches for a handler, and the verbs that needs."""

    group: str
    plural: str
    verbs: tuple[str, ...]
    handler: str


def kopf_watches() -> list[KopfWatch]:
    """Register the operator's handlers into a fresh kopf registry and read what they watch."""
    import kopf

    from . import handlers
    from .settings import Settings

    registry = kopf.OperatorRegistry()
    handlers.register(registry, Settings())
    known = {r.plural: r for r in vars(kube).values() if isinstance(r, kube.Resource)}
    out: list[KopfWatch] = []
    groups: list[tuple[Any, tuple[str, ...]]] = [
        (registry._changing, ("list", "watch", "patch")),
        (registry._spawning, ("list", "watch", "patch")),
        (registry._watching, ("list", "watch")),
        (registry._indexing, ("list", "watch")),
    ]
    for sub, verbs in groups:
        for handler in sub.get_all_handlers():
            sel = handler.selector
            if sel is None:
                raise RbacDerivationError(f"kopf handler {handler.id!r} has no resource selector")
            plural = sel.plural or (kube.BY_KIND[sel.kind].plural if sel.kind in kube.BY_KIND else None)
            plural = plural or sel.any_name
            if plural not in known or (sel.group or "") != known[plural].group:
                raise RbacDerivationError(
                    f"kopf handler {handler.id!r} watches {sel.group}/{plural}, which has no Resource "
                    "constant in clients/kube.py: add one"
                )
            out.append(KopfWatch(known[plural].group, plural, verbs, str(handler.id)))
    if registry._webhooks.get_all_handlers():
        raise RbacDerivationError("kopf admission webhooks need RBAC that modelops.rbac does not derive yet")
    return out


# --------------------------------------------------------------------------------------------
# Rule sets.
# --------------------------------------------------------------------------------------------


def _ordered(verbs: Iterable[str]) -> tuple[str, ...]:
    verbs = set(verbs)
    unknown = verbs - set(VERB_ORDER)
    if unknown:
        raise RbacDerivationError(f"unknown verbs {sorted(unknown)}")
    return tuple(v for v in VERB_ORDER if v in verbs)


def derive_rules(
    calls: Iterable[KubeCall] | None = None, watches: Iterable[KopfWatch] | None = None
) -> dict[str, list[Rule]]:
    """All rule sets (see :data:`RULE_SETS`) from the code's calls, kopf's watches and kopf's needs."""
    calls = operator_calls() if calls is None else list(calls)
    watches = kopf_watches() if watches is None else list(watches)
    # (group, resource) → who needs which verbs, for the rule's comment.
    code: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
    kopf: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
    election: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
    for call in calls:
        if not call.resource.namespaced:
            raise RbacDerivationError(f"{call.module}:{call.line}: cluster-scoped resources are not supported")
        key = (call.resource.group, call.resource.plural + (f"/{call.subresource}" if call.subresource else ""))
        into = election if call.resource in LEADER_ELECTION_RESOURCES else code
        into.setdefault(key, (set(), set()))[0].add(call.verb)
        into[key][1].add(call.module)
    for watch in watches:
        key = (watch.group, watch.plural)
        kopf.setdefault(key, (set(), set()))[0].update(watch.verbs)
        kopf[key][1].add(f"handler {watch.handler}")
    framework = {(r.group, r.resource): r for r in KOPF_RULES["namespaced"]}
    namespaced: list[Rule] = []
    for key in sorted(code.keys() | kopf.keys() | framework.keys()):
        verbs: set[str] = set()
        parts: list[str] = []
        if key in code:
            verbs |= code[key][0]
            parts.append(f"operator {', '.join(_ordered(code[key][0]))} ({', '.join(sorted(code[key][1]))})")
        if key in kopf:
            verbs |= kopf[key][0]
            parts.append(f"kopf {', '.join(_ordered(kopf[key][0]))} ({', '.join(sorted(kopf[key][1]))})")
        if key in framework:
            verbs |= set(framework[key].verbs)
            parts.append(framework[key].why)
        namespaced.append(Rule(key[0], key[1], _ordered(verbs), "; ".join(parts)))
    merged = {name: list(KOPF_RULES.get(name, [])) for name in RULE_SETS}
    merged["namespaced"] = namespaced
    merged["leaderElection"] = [
        Rule(
            key[0],
            key[1],
            _ordered(verbs),
            f"operator {', '.join(_ordered(verbs))} ({', '.join(sorted(modules))}): leader election "
            "between replicas, in the operator's own namespace",
        )
        for key, (verbs, modules) in sorted(election.items())
    ]
    for rules in merged.values():
        for rule in rules:
            if "*" in rule.verbs or "*" in rule.resource or "*" in rule.group:
                raise RbacDerivationError(f"wildcard in {rule}")
    return merged


# --------------------------------------------------------------------------------------------
# Rendering.
# --------------------------------------------------------------------------------------------

HEADER = (
    "# Generated by `python -m modelops.rbac --write` (make generate) from the operator's code:\n"
    "# its KubeClient calls, its kopf handlers and kopf's own needs. Do not edit by hand.\n"
)


def _yaml_list(items: Iterable[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def rules_yaml(rules: Iterable[Rule], indent: int = 0) -> str:
    """PolicyRules as YAML list items, each preceded by a comment saying why it exists."""
    pad = " " * indent
    lines: list[str] = []
    for rule in rules:
        lines.append(f"{pad}# {rule.why}")
        lines.append(f"{pad}- apiGroups: {_yaml_list([rule.group])}")
        lines.append(f"{pad}  resources: {_yaml_list([rule.resource])}")
        lines.append(f"{pad}  verbs: {_yaml_list(rule.verbs)}")
    return "\n".join(lines) + "\n"


def render_helm(rule_sets: Mapping[str, list[Rule]]) -> str:
    """The chart's ``_rbac_rules.tpl``: one named template per rule set, free of values."""
    out = ["{{/*\n" + HEADER + "Each template is a YAML list of PolicyRules; rbac.yaml includes them.\n*/}}\n"]
    for name in RULE_SETS:
        out.append(f'{{{{- define "modelops.rbac.{name}" }}}}\n')
        out.append(rules_yaml(rule_sets[name]))
        out.append("{{- end }}\n")
    return "".join(out)


def _rbac_object(kind: str, name: str, namespace: str | None = None) -> str:
    """The head (apiVersion, kind, metadata with the kustomize base's labels) of an RBAC object."""
    located = f"  namespace: {namespace}\n" if namespace else ""
    return (
        "apiVersion: rbac.authorization.k8s.io/v1\n"
        f"kind: {kind}\n"
        "metadata:\n"
        f"  name: {name}\n"
        + located
        + "  labels:\n"
        + "    app.kubernetes.io/name: modelops\n"
        + "    app.kubernetes.io/component: operator\n"
    )


def _binding(kind: str, name: str, namespace: str | None = None) -> str:
    """A (Cluster)RoleBinding of the kustomize base's ServiceAccount to the role of the same name."""
    role = "ClusterRole" if kind == "ClusterRoleBinding" else "Role"
    return (
        _rbac_object(kind, name, namespace)
        + "roleRef:\n"
        + "  apiGroup: rbac.authorization.k8s.io\n"
        + f"  kind: {role}\n"
        + f"  name: {name}\n"
        + "subjects:\n"
        + "  - kind: ServiceAccount\n"
        + f"    name: {KUSTOMIZE_NAME}\n"
        + f"    namespace: {KUSTOMIZE_NAMESPACE}\n"
    )


def render_kustomize(rule_sets: Mapping[str, list[Rule]]) -> str:
    """The kustomize base's ClusterRole (all namespaces) and ClusterRoleBinding, and the Role and
    RoleBinding for the leader-election Lease in the operator's namespace."""
    rules = [*rule_sets["namespaced"], *rule_sets["cluster"]]
    election = f"{KUSTOMIZE_NAME}-leader-election"
    return (
        HEADER
        + "# Cluster-wide install: no namespace watching rules.\n"
        + _rbac_object("ClusterRole", KUSTOMIZE_NAME)
        + "rules:\n"
        + rules_yaml(rules)
        + "---\n"
        + _binding("ClusterRoleBinding", KUSTOMIZE_NAME)
        + "---\n"
        + "# The leader-election Lease lives in the operator's own namespace only.\n"
        + _rbac_object("Role", election, KUSTOMIZE_NAMESPACE)
        + "rules:\n"
        + rules_yaml(rule_sets["leaderElection"])
        + "---\n"
        + _binding("RoleBinding", election, KUSTOMIZE_NAMESPACE)
    )


@functools.cache
def code_rules() -> dict[str, list[Rule]]:
    """:func:`derive_rules` for this checkout's code (computed once per process)."""
    return derive_rules()


def generated_files(rule_sets: Mapping[str, list[Rule]] | None = None) -> dict[Path, str]:
    """``{relative path: content}`` of every file carrying the rules."""
    rule_sets = code_rules() if rule_sets is None else rule_sets
    return {HELM_RULES: render_helm(rule_sets), KUSTOMIZE_RBAC: render_kustomize(rule_sets)}


def main(argv: list[str] | None = None) -> int:
    """``--write`` the generated files, ``--check`` them (exit 1 when stale), or print the rules."""
    parser = argparse.ArgumentParser(prog="python -m modelops.rbac", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write the generated files")
    mode.add_argument("--check", action="store_true", help="exit 1 when a generated file is stale")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    try:
        files = generated_files()
    except RbacDerivationError as exc:
        print(f"modelops.rbac: {exc}", file=sys.stderr)
        return 2
    if args.write:
        for rel, text in files.items():
            path = args.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
        return 0
    if args.check:
        stale = [str(rel) for rel, text in files.items() if _read(args.root / rel) != text]
        if stale:
            print(f"stale RBAC files (run `make generate`): {', '.join(stale)}", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(files[HELM_RULES])
    return 0


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
