"""``docker run`` for one container of a pod template built by the operator's own builders.

The smoke tests run the images the way the chart's pods do, so the pod's securityContext,
command, env and volumes are translated rather than restated: numeric user and group, a
read-only root file system, all capabilities dropped, no privilege escalation, and each mounted
volume as a tmpfs (emptyDir) or a host folder (a PersistentVolumeClaim).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def docker_run_args(
    pod_spec: dict[str, Any],
    container_name: str,
    *,
    image: str,
    name: str,
    claims: dict[str, Path] | None = None,
    env: dict[str, str] | None = None,
    field_values: dict[str, str] | None = None,
) -> list[str]:
    """The ``docker run`` argv (after ``docker``) for container ``container_name`` of ``pod_spec``.

    ``claims``: host folders standing in for the pod's PersistentVolumeClaims, by claim name.
    ``env``: values that replace or add to the container's env. ``field_values``: values of
    ``valueFrom.fieldRef`` env entries by field path (e.g. ``metadata.name``). The container
    shares the host's network (its servers listen on the host's loopback). As in a pod, the
    entrypoint runs as PID 1 (no init process).

    Raises ``KeyError`` for a container or claim the pod does not have, ``ValueError`` for an
    env source or volume type the translation does not cover.
    """
    container = next(c for c in pod_spec["containers"] if c["name"] == container_name)
    pod_ctx = pod_spec.get("securityContext", {})
    ctx = {**pod_ctx, **container.get("securityContext", {})}
    # No --init: in a pod the entrypoint is PID 1 too, and must handle SIGTERM itself.
    args = ["run", "--name", name, "--network", "host"]
    if "runAsUser" in ctx:
        args += ["--user", f"{ctx['runAsUser']}:{ctx.get('runAsGroup', ctx['runAsUser'])}"]
    if "fsGroup" in pod_ctx:
        args += ["--group-add", str(pod_ctx["fsGroup"])]
    if ctx.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    for cap in ctx.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", cap]
    if ctx.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            args += ["--tmpfs", f"{mount['mountPath']}:rw,exec,mode=1777"]
        elif "persistentVolumeClaim" in volume:
            host = (claims or {})[volume["persistentVolumeClaim"]["claimName"]]
            suffix = ":ro" if mount.get("readOnly") else ""
            args += ["--volume", f"{host}:{mount['mountPath']}{suffix}"]
        else:
            raise ValueError(f"volume {mount['name']}: only emptyDir and persistentVolumeClaim are translated")
    values: dict[str, str] = {}
    for entry in container.get("env", []):
        if "value" in entry:
            values[entry["name"]] = entry["value"]
        elif "fieldRef" in entry.get("valueFrom", {}):
            values[entry["name"]] = (field_values or {})[entry["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            raise ValueError(f"env {entry['name']}: only values and fieldRefs are translated")
    values.update(env or {})
    for key, value in values.items():
        args += ["--env", f"{key}={value}"]
    command = container.get("command", [])
    if command:
        args += ["--entrypoint", command[0]]
    return [*args, image, *command[1:], *container.get("args", [])]
