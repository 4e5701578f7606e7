"""Local pods: turn a pod template's container into a local process.

A :class:`LocalPod` owns a directory ``<state>/kubelet/pods/<namespace>/<pod>/`` holding
``pod.json`` (identity, owner, phase: read by ``modelops sandbox logs``), one log file per
container (stdout and stderr interleaved, the pod log), ``work/`` (the default working
directory), ``home/`` and ``tmp/`` (HOME and TMPDIR) and ``volumes/<name>/`` (emptyDir, configMap
and secret volumes). PersistentVolumeClaims map to ``<state>/volumes/<namespace>/<claim>/``
shared by every pod, hostPath volumes to their path; a mount path inside the state dir is used
as is. Env values (and the string leaves of JSON env values), command, args and workingDir that
start with a volume's ``mountPath`` are rewritten to the local directory, unless they already
name a host location (see :meth:`Mounts.rewrite`).

:func:`build_launch` resolves the image (ErrImagePull), the environment (``value``, ``valueFrom``
secretKeyRef/configMapKeyRef/fieldRef/resourceFieldRef, ``envFrom``, ``$(VAR)`` expansion) and the
volumes; :class:`ProcessHandle` runs the result in its own process group.

Termination messages: a process cannot write the container's ``terminationMessagePath`` here
(``/dev/termination-log`` is the host's), so each container gets a file
``<pod>/<container>.termination-log`` named by ``MODELOPS_TERMINATION_LOG`` (the runtime writes
there, see modelops.contract), emptied before each start. :func:`termination_message` reads it
after the process exits like the kubelet does (at most 4096 bytes; with
``terminationMessagePolicy: FallbackToLogsOnError`` and a failure, the log's last 80 lines, at
most 2048 bytes, when the file is empty).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from ...contract import ENV_TERMINATION_LOG
from .. import procs
from ..client import CONFIGMAPS, PODS, SECRETS, ApiError, AsyncApi, NotFoundError
from .images import ImagePullError, ImageResolver

log = logging.getLogger("modelops.sandbox.kubelet")

#: Annotations the kubelet puts on mirror pods.
ANN_PORT = "sandbox.modelops.io/port"
ANN_PID = "sandbox.modelops.io/pid"
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_VAR_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


def now_iso() -> str:
    """The current UTC time as an RFC 3339 timestamp with second precision (Kubernetes style)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def random_suffix(length: int = 5) -> str:
    """A Kubernetes-style random name suffix (consonants and digits)."""
    return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(length))


class PodSetupError(Exception):
    """A container could not be started.

    ``reason`` is the Kubernetes-style waiting reason (ErrImagePull, CreateContainerConfigError,
    FailedMount, StartError, SandboxUnsupported); ``retryable`` tells whether waiting can fix it
    (a missing Secret may appear later, an unknown image will not).
    """

    def __init__(self, reason: str, message: str, retryable: bool = False) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.retryable = retryable


@dataclass
class Owner:
    """The controller object of a pod (Job or Deployment)."""

    kind: str
    name: str
    uid: str | None
    api_version: str

    def reference(self) -> dict[str, Any]:
        """An ownerReference (controller) to this owner; without uid when the owner has none."""
        ref: dict[str, Any] = {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "controller": True,
            "blockOwnerDeletion": True,
        }
        if self.uid:
            ref["uid"] = self.uid
        return ref


@dataclass
class LocalPod:
    """One pod instance: identity, template and local directories."""

    namespace: str
    name: str
    owner: Owner
    template: Mapping[str, Any]
    state_dir: Path
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    uid: str = field(default_factory=lambda: secrets.token_hex(16))
    created: float = field(default_factory=time.time)
    port: int | None = None
    #: The pod's address: 127.0.0.1 with the emulator, its own loopback address on a node.
    ip: str = "127.0.0.1"

    @property
    def spec(self) -> Mapping[str, Any]:
        """The pod spec of the template."""
        spec: Mapping[str, Any] = self.template.get("spec") or {}
        return spec

    @property
    def root(self) -> Path:
        """``<state>/kubelet/pods/<namespace>/<pod>``."""
        return self.state_dir / "kubelet" / "pods" / self.namespace / self.name

    def log_path(self, container: str) -> Path:
        """The log file of one container."""
        return self.root / f"{container}.log"

    def termination_log_path(self, container: str) -> Path:
        """The termination message file of one container (see the module docstring)."""
        return self.root / f"{container}.termination-log"

    def prepare_dirs(self) -> None:
        """Create the pod's directories."""
        for sub in ("work", "home", "tmp", "volumes"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def write_record(self, phase: str, **extra: Any) -> None:
        """Write ``pod.json`` (read by the CLI's ``logs``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        main = [c.get("name", "main") for c in self.spec.get("containers") or []]
        record = {
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
            "owner": {"kind": self.owner.kind, "name": self.owner.name, "uid": self.owner.uid},
            "containers": main,
            "initContainers": [c.get("name") for c in self.spec.get("initContainers") or []],
            "created": self.created,
            "phase": phase,
            "port": self.port,
            **extra,
        }
        tmp = self.root / "pod.json.tmp"
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(self.root / "pod.json")

    def manifest(self) -> dict[str, Any]:
        """The mirror Pod object for the API server."""
        annotations = dict(self.annotations)
        if self.port is not None:
            annotations[ANN_PORT] = str(self.port)
        spec = json.loads(json.dumps(self.spec))
        spec["nodeName"] = "sandbox"
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": dict(self.labels),
                "annotations": annotations,
                "ownerReferences": [self.owner.reference()],
            },
            "spec": spec,
        }


@dataclass
class Launch:
    """Everything needed to start one container process."""

    container: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log_path: Path


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined vars are replaced, ``$$`` escapes, others stay."""

    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR_REF.sub(repl, value)


class _Lookups:
    """Per-launch cache of Secrets and ConfigMaps fetched from the API."""

    def __init__(self, api: AsyncApi, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.cache: dict[tuple[str, str], dict[str, str] | None] = {}

    async def data(self, kind: str, name: str) -> dict[str, str] | None:
        """Decoded ``data`` (+ ``stringData``) of a Secret or ``data`` of a ConfigMap; None when absent."""
        key = (kind, name)
        if key not in self.cache:
            res = SECRETS if kind == "secret" else CONFIGMAPS
            try:
                obj = await self.api.get(res, name, self.namespace)
            except NotFoundError:
                self.cache[key] = None
            else:
                values: dict[str, str] = {}
                if kind == "secret":
                    for k, v in (obj.get("data") or {}).items():
                        values[k] = base64.b64decode(v).decode("utf-8", "replace")
                    values.update({k: str(v) for k, v in (obj.get("stringData") or {}).items()})
                else:
                    values.update({k: str(v) for k, v in (obj.get("data") or {}).items()})
                self.cache[key] = values
        return self.cache[key]

    async def key(self, kind: str, ref: Mapping[str, Any]) -> str | None:
        """The value of a secretKeyRef/configMapKeyRef; None when optional and missing.

        Raises PodSetupError (retryable) when a required object or key is missing.
        """
        name, key = str(ref.get("name", "")), str(ref.get("key", ""))
        values = await self.data(kind, name)
        label = "secret" if kind == "secret" else "configmap"
        if values is None:
            if ref.get("optional"):
                return None
            raise PodSetupError("CreateContainerConfigError", f'{label} "{name}" not found', retryable=True)
        if key not in values:
            if ref.get("optional"):
                return None
            raise PodSetupError(
                "CreateContainerConfigError", f"couldn't find key {key} in {label} {self.namespace}/{name}", True
            )
        return values[key]


def _field_ref(pod: LocalPod, path: str) -> str:
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        source = pod.labels if match.group(1) == "labels" else pod.annotations
        return source.get(match.group(2), "")
    values = {
        "metadata.name": pod.name,
        "metadata.namespace": pod.namespace,
        "metadata.uid": pod.uid,
        "spec.nodeName": "sandbox",
        "spec.serviceAccountName": str(pod.spec.get("serviceAccountName") or "default"),
        "status.podIP": pod.ip,
        "status.podIPs": pod.ip,
        "status.hostIP": "127.0.0.1",
        "status.hostIPs": "127.0.0.1",
    }
    if path not in values:
        raise PodSetupError("CreateContainerConfigError", f"unsupported fieldRef fieldPath {path!r}")
    return values[path]


def _resource_field(container: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
    section, _, name = str(ref.get("resource", "")).partition(".")
    value = ((container.get("resources") or {}).get(section) or {}).get(name)
    return str(value) if value is not None else "0"


def _names_host_location(value: str, mount_path: str) -> bool:
    """Whether a path below ``mount_path`` names a host location: an ancestor strictly below the
    mount path (or the path itself) exists on the host."""
    path, top = Path(value), Path(mount_path)
    while path != top and path != path.parent:
        if path.exists():
            return True
        path = path.parent
    return False


class Mounts:
    """A container's volume mounts mapped to local directories (longest mount path first)."""

    def __init__(self, pairs: list[tuple[str, Path]], host_root: Path | None = None) -> None:
        self.pairs = sorted(pairs, key=lambda p: len(p[0]), reverse=True)
        self.host_root = str(host_root) if host_root is not None else None

    def rewrite(self, value: str) -> str:
        """Rewrite a path that starts with a mount path to the local directory; others unchanged.

        Paths inside ``host_root`` (the sandbox's state dir) are host paths already and are kept,
        even when a mount such as ``/tmp`` is a prefix of them (state dirs under /tmp in tests);
        so are paths below a mount path that name an existing host file or directory (or lie
        inside one). The mount path itself (``TMPDIR=/tmp``) is always rewritten.
        """
        if self.host_root and (value == self.host_root or value.startswith(self.host_root + "/")):
            return value
        for mount_path, local in self.pairs:
            mp = mount_path.rstrip("/") or "/"
            if value == mp:
                return str(local)
            if value.startswith(mp + "/"):
                if _names_host_location(value, mp):
                    return value  # e.g. a dataset under the host's /tmp while the pod mounts /tmp
                return str(local) + value[len(mp) :]
        return value

    def rewrite_env(self, value: str) -> str:
        """:meth:`rewrite` a value, or the string leaves of a JSON object or array value."""
        stripped = value.lstrip()
        if stripped[:1] in ("{", "[") and self.pairs:
            try:
                parsed = json.loads(value)
            except ValueError:
                return self.rewrite(value)
            rewritten = self._rewrite_json(parsed)
            return value if rewritten == parsed else json.dumps(rewritten, separators=(",", ":"))
        return self.rewrite(value)

    def _rewrite_json(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.rewrite(value)
        if isinstance(value, list):
            return [self._rewrite_json(v) for v in value]
        if isinstance(value, dict):
            return {k: self._rewrite_json(v) for k, v in value.items()}
        return value

    def local_for(self, mount_path: str) -> Path | None:
        """The local directory mounted exactly at ``mount_path``, if any."""
        for mp, local in self.pairs:
            if mp.rstrip("/") == mount_path.rstrip("/"):
                return local
        return None


async def _materialise_volumes(pod: LocalPod, lookups: _Lookups) -> dict[str, Path]:
    """Create the local directory of every pod volume; returns name → directory."""
    out: dict[str, Path] = {}
    for volume in pod.spec.get("volumes") or []:
        name = str(volume.get("name"))
        local = pod.root / "volumes" / name
        if "persistentVolumeClaim" in volume:
            claim = str(volume["persistentVolumeClaim"].get("claimName"))
            local = pod.state_dir / "volumes" / pod.namespace / claim
        elif "hostPath" in volume:
            local = Path(str(volume["hostPath"].get("path")))
        elif "secret" in volume or "configMap" in volume:
            kind = "secret" if "secret" in volume else "configmap"
            source = volume.get("secret") or volume.get("configMap") or {}
            obj_name = str(source.get("secretName") or source.get("name") or "")
            values = await lookups.data(kind, obj_name)
            if values is None and not source.get("optional"):
                raise PodSetupError("FailedMount", f'volume "{name}": {kind} "{obj_name}" not found', retryable=True)
            local.mkdir(parents=True, exist_ok=True)
            items = source.get("items") or [{"key": k, "path": k} for k in (values or {})]
            for item in items:
                if values is not None and item.get("key") in values:
                    target = local / str(item.get("path") or item["key"])
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(values[item["key"]])
        local.mkdir(parents=True, exist_ok=True)
        out[name] = local
    return out


def _is_file_volume(pod: LocalPod, name: str) -> bool:
    """Whether a pod volume is a configMap or secret volume (always materialised per pod)."""
    for volume in pod.spec.get("volumes") or []:
        if volume.get("name") == name:
            return "configMap" in volume or "secret" in volume
    return False


async def build_launch(
    api: AsyncApi,
    images: ImageResolver,
    pod: LocalPod,
    container: Mapping[str, Any],
    extra_env: Mapping[str, str] | None = None,
) -> Launch:
    """Resolve one container of ``pod`` into a :class:`Launch`.

    ``extra_env`` is applied last (the kubelet's MODELOPS_PORT). Raises PodSetupError:
    ErrImagePull (unknown image), CreateContainerConfigError/FailedMount (missing Secret or
    ConfigMap; retryable), StartError (executable not found).
    """
    cname = str(container.get("name") or "main")
    image = str(container.get("image") or "")
    try:
        spec = images.resolve(image)
    except ImagePullError as exc:
        raise PodSetupError("ErrImagePull", str(exc)) from exc

    pod.prepare_dirs()
    lookups = _Lookups(api, pod.namespace)
    volumes = await _materialise_volumes(pod, lookups)
    pairs: list[tuple[str, Path]] = []
    state = pod.state_dir.resolve()
    for vm in container.get("volumeMounts") or []:
        local = volumes.get(str(vm.get("name")))
        if local is None:
            raise PodSetupError("CreateContainerConfigError", f'volume mount "{vm.get("name")}" has no volume')
        mount_path = Path(str(vm.get("mountPath")))
        if mount_path.is_relative_to(state) and not _is_file_volume(pod, str(vm.get("name"))):
            # A mount path inside the sandbox's state dir is a host path already (the sandbox
            # operator's prediction log): use it as is, shared by every pod that mounts it.
            mount_path.mkdir(parents=True, exist_ok=True)
            pairs.append((str(mount_path), mount_path))
            continue
        if vm.get("subPath"):
            local = local / str(vm["subPath"])
            local.mkdir(parents=True, exist_ok=True)
        pairs.append((str(vm.get("mountPath")), local))
    mounts = Mounts(pairs, host_root=state)

    tmp = mounts.local_for("/tmp") or pod.root / "tmp"
    base_path = [*spec.path, *os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(os.pathsep)]
    env: dict[str, str] = {
        "PATH": os.pathsep.join(dict.fromkeys(p for p in base_path if p)),
        "HOME": str(pod.root / "home"),
        "TMPDIR": str(tmp),
        "HOSTNAME": pod.name,
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        procs.MARKER_ENV: procs.marker_value(pod.state_dir),
    }
    env.update(spec.env)

    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix") or "")
        if "secretRef" in source:
            kind, ref = "secret", source["secretRef"]
        else:
            kind, ref = "configmap", source.get("configMapRef")
        if not ref:
            continue
        values = await lookups.data(kind, str(ref.get("name")))
        if values is None:
            if ref.get("optional"):
                continue
            raise PodSetupError("CreateContainerConfigError", f'{kind} "{ref.get("name")}" not found', True)
        env.update({prefix + k: v for k, v in values.items()})

    for item in container.get("env") or []:
        name = str(item.get("name"))
        if "valueFrom" in item:
            vf = item["valueFrom"] or {}
            value: str | None
            if "secretKeyRef" in vf:
                value = await lookups.key("secret", vf["secretKeyRef"])
            elif "configMapKeyRef" in vf:
                value = await lookups.key("configmap", vf["configMapKeyRef"])
            elif "fieldRef" in vf:
                value = _field_ref(pod, str(vf["fieldRef"].get("fieldPath")))
            elif "resourceFieldRef" in vf:
                value = _resource_field(container, vf["resourceFieldRef"])
            else:
                raise PodSetupError("CreateContainerConfigError", f"env {name}: unsupported valueFrom {sorted(vf)}")
            if value is None:
                continue
        else:
            value = _expand(str(item.get("value", "")), env)
        env[name] = mounts.rewrite_env(value)

    env.update(extra_env or {})
    termination_log = pod.termination_log_path(cname)
    termination_log.write_text("")  # each start begins without a message
    env[ENV_TERMINATION_LOG] = str(termination_log)

    command = [str(c) for c in container.get("command") or []]
    args = [str(a) for a in container.get("args") or []]
    argv = [mounts.rewrite(_expand(a, env)) for a in (command or list(spec.entrypoint)) + args]
    if not argv:
        raise PodSetupError("StartError", f"container {cname!r}: no command and the image has no entrypoint")
    exe = argv[0] if os.path.isabs(argv[0]) else shutil.which(argv[0], path=env["PATH"])
    if exe is None or not os.access(exe, os.X_OK):
        raise PodSetupError("StartError", f'exec: "{argv[0]}": executable file not found in $PATH')
    argv[0] = exe

    cwd = pod.root / "work"
    if container.get("workingDir"):
        rewritten = Path(mounts.rewrite(str(container["workingDir"])))
        if rewritten.is_dir():
            cwd = rewritten
    return Launch(container=cname, argv=argv, env=env, cwd=cwd, log_path=pod.log_path(cname))


#: Limits of a termination message, as the kubelet applies them.
MESSAGE_MAX_BYTES, FALLBACK_MAX_BYTES, FALLBACK_MAX_LINES = 4096, 2048, 80


def termination_message(pod: LocalPod, container: Mapping[str, Any], code: int) -> str | None:
    """The termination message of ``container`` of ``pod`` that exited with ``code`` (see the
    module docstring), or None."""
    name = str(container.get("name") or "main")
    text = ""
    with contextlib.suppress(OSError):
        text = pod.termination_log_path(name).read_bytes()[:MESSAGE_MAX_BYTES].decode(errors="replace")
    if not text.strip() and code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
        with contextlib.suppress(OSError):
            lines = pod.log_path(name).read_bytes().splitlines()[-FALLBACK_MAX_LINES:]
            text = b"\n".join(lines)[-FALLBACK_MAX_BYTES:].decode(errors="replace")
    return text.strip() or None


class ProcessHandle:
    """A running container process in its own process group, logging to the pod log."""

    def __init__(self, process: asyncio.subprocess.Process, launch: Launch) -> None:
        self.process = process
        self.launch = launch
        self.started = time.time()
        self.started_iso = now_iso()

    @classmethod
    async def start(cls, launch: Launch) -> ProcessHandle:
        """Start the process (stdout and stderr appended to the log). Raises PodSetupError(StartError)."""
        launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(launch.log_path, "ab") as logf:
            try:
                process = await asyncio.create_subprocess_exec(
                    *launch.argv,
                    cwd=str(launch.cwd),
                    env=launch.env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=logf,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=procs.pdeathsig_preexec(),
                )
            except OSError as exc:
                raise PodSetupError("StartError", f"{launch.argv[0]}: {exc.strerror or exc}") from exc
        return cls(process, launch)

    @property
    def pid(self) -> int:
        """The process id (also the process group id)."""
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code, or None while running (negative: killed by that signal)."""
        return self.process.returncode

    async def wait(self) -> int:
        """Wait for the process to exit; returns its exit code."""
        return await self.process.wait()

    async def stop(self, grace: float) -> int:
        """SIGTERM the process group, SIGKILL after ``grace`` seconds; returns the exit code."""
        if self.process.returncode is None:
            procs.signal_group(self.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self.process.wait()), grace)
            except TimeoutError:
                pass
        # Kill the whole group: children of the container process must not outlive it.
        procs.signal_group(self.pid, signal.SIGKILL)
        return await self.process.wait()


def exit_reason(code: int) -> str:
    """Kubernetes-style terminated reason for an exit code."""
    return "Completed" if code == 0 else "Error"


def grace_seconds(spec: Mapping[str, Any], cap: float) -> float:
    """terminationGracePeriodSeconds of a pod spec (default 30), capped at ``cap`` seconds."""
    value = spec.get("terminationGracePeriodSeconds")
    return min(float(30 if value is None else value), cap)


class PodMirror:
    """Keeps Pod objects in the API server in step with local pods (best effort).

    Mirroring turns itself off when the API server does not serve pods (404 on create).
    API and connection errors are logged or ignored, never raised: the local process is the
    source of truth.
    """

    def __init__(self, api: AsyncApi, enabled: bool = True) -> None:
        self.api = api
        self.enabled = enabled

    async def create(self, pod: LocalPod) -> None:
        """Create the Pod object (phase Pending)."""
        if not self.enabled:
            return
        try:
            await self.api.create(PODS, pod.manifest(), pod.namespace)
        except NotFoundError:
            log.warning("API server does not serve pods: pod mirroring disabled")
            self.enabled = False
        except (ApiError, httpx.HTTPError) as exc:
            log.warning("cannot create pod %s/%s: %s", pod.namespace, pod.name, exc)

    async def status(self, pod: LocalPod, status: Mapping[str, Any]) -> None:
        """Write the Pod's status subresource."""
        if not self.enabled:
            return
        try:
            await self.api.patch(PODS, pod.name, {"status": dict(status)}, pod.namespace, "status")
        except NotFoundError:
            pass  # deleted meanwhile (garbage collection of its owner)
        except (ApiError, httpx.HTTPError) as exc:
            log.warning("cannot update pod %s/%s status: %s", pod.namespace, pod.name, exc)

    async def annotate(self, pod: LocalPod, annotations: Mapping[str, str]) -> None:
        """Merge annotations into the Pod object."""
        if not self.enabled:
            return
        with contextlib.suppress(ApiError, httpx.HTTPError):
            await self.api.patch(PODS, pod.name, {"metadata": {"annotations": dict(annotations)}}, pod.namespace)

    async def delete(self, pod: LocalPod) -> None:
        """Delete the Pod object (absent is fine)."""
        if not self.enabled:
            return
        with contextlib.suppress(ApiError, httpx.HTTPError):
            await self.api.delete(PODS, pod.name, pod.namespace)


def container_status(
    pod: LocalPod,
    container: Mapping[str, Any],
    *,
    running_since: str | None = None,
    waiting: tuple[str, str] | None = None,
    terminated: tuple[int, str, str] | None = None,
    ready: bool = False,
    restarts: int = 0,
    message: str | None = None,
    last_terminated: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One ``containerStatuses`` entry: running, waiting (reason, message) or terminated (code, start, end,
    and the termination ``message``); ``last_terminated`` is the previous run's terminated state
    (``lastState``, e.g. while in CrashLoopBackOff)."""
    state: dict[str, Any]
    if terminated is not None:
        code, started, finished = terminated
        state = {"terminated": {"exitCode": code, "reason": exit_reason(code), "startedAt": started,
                                "finishedAt": finished}}
        if message:
            state["terminated"]["message"] = message
    elif waiting is not None:
        state = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
    else:
        state = {"running": {"startedAt": running_since or now_iso()}}
    status = {
        "name": container.get("name", "main"),
        "image": container.get("image", ""),
        "ready": ready,
        "started": terminated is None and waiting is None,
        "restartCount": restarts,
        "state": state,
    }
    if last_terminated:
        status["lastState"] = {"terminated": dict(last_terminated)}
    return status


def pod_status(phase: str, containers: list[dict[str, Any]], ready: bool, started: str) -> dict[str, Any]:
    """A Pod ``status`` with phase, Ready/ContainersReady conditions and container statuses."""
    flag = "True" if ready else "False"
    now = now_iso()
    return {
        "phase": phase,
        "podIP": "127.0.0.1",
        "hostIP": "127.0.0.1",
        "startTime": started,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
            {"type": "Initialized", "status": "True", "lastTransitionTime": started},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
            {"type": "Ready", "status": flag, "lastTransitionTime": now},
        ],
        "containerStatuses": containers,
    }


#: Phases after which a pod log no longer grows.
FINAL_PHASES = {"Succeeded", "Failed", "Terminated"}


def pod_records(state_dir: Path, namespace: str, name: str) -> list[dict[str, Any]]:
    """``pod.json`` records of the pods of a Job or Deployment named ``name`` (or of pod ``name``).

    Oldest first; [] when none. Reads the kubelet's files only (no API call).
    """
    base = Path(state_dir) / "kubelet" / "pods" / namespace
    records = []
    for path in base.glob("*/pod.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("name") == name or (record.get("owner") or {}).get("name") == name:
            record["dir"] = str(path.parent)
            records.append(record)
    return sorted(records, key=lambda r: float(r.get("created") or 0))


def pod_log_path(record: Mapping[str, Any], container: str | None = None) -> Path:
    """The log file of a pod record's container (default: its first app container)."""
    names = list(record.get("containers") or []) or ["main"]
    return Path(str(record["dir"])) / f"{container or names[0]}.log"
