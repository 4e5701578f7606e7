"""Images of the real node: written as ``docker save`` archives and imported into containerd's
``k8s.io`` namespace (the one the CRI plugin serves to the kubelet). Nothing is ever pulled.

:func:`write_image_tar` makes a one-layer archive in the ``docker save`` format (``manifest.json``,
an image config, a ``layer.tar``) from files of this machine; the node's pause image (Kubernetes'
own ``build/pause/linux/pause.c``, compiled statically by ``hack/kube/build.sh --node``) and small
test images are made that way.
Images built by Docker are imported from ``docker save`` output with :func:`import_image` too.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path


class ImageError(RuntimeError):
    """An image could not be built or imported (the message has the command's output)."""


def _layer(files: Mapping[str, Path], symlinks: Mapping[str, str]) -> bytes:
    """A layer tar: ``files`` (image path → host file, mode kept) and ``symlinks`` (path → target);
    parent directories are added, every entry owned by root."""
    buffer = io.BytesIO()
    dirs: set[str] = set()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def ensure_parents(path: str) -> None:
            parts = path.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                directory = "/".join(parts[:i])
                if directory not in dirs:
                    dirs.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)

        for path, source in sorted(files.items()):
            ensure_parents(path)
            info = tar.gettarinfo(str(source), arcname=path.strip("/"))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            with open(source, "rb") as f:
                tar.addfile(info, f)
        for path, target in sorted(symlinks.items()):
            ensure_parents(path)
            info = tarfile.TarInfo(path.strip("/"))
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
            tar.addfile(info)
    return buffer.getvalue()


def write_image_tar(out: Path, reference: str, files: Mapping[str, Path], *, symlinks: Mapping[str, str] | None = None,
                    entrypoint: Sequence[str] | None = None, cmd: Sequence[str] | None = None,
                    env: Sequence[str] = ("PATH=/bin:/usr/bin",), user: str | None = None) -> Path:
    """Write a one-layer image archive in the ``docker save`` format and return ``out``.

    Args:
        out: the archive to write.
        reference: its tag, e.g. ``registry.k8s.io/pause:3.10`` (kept by ``ctr images import``).
        files: image path → host file. symlinks: image path → link target.
        entrypoint, cmd, env, user: the image config's ``Entrypoint``, ``Cmd``, ``Env`` and ``User``.
    """
    layer = _layer(files, symlinks or {})
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    container_config: dict[str, object] = {"Env": list(env), "WorkingDir": "/"}
    if entrypoint:
        container_config["Entrypoint"] = list(entrypoint)
    if cmd:
        container_config["Cmd"] = list(cmd)
    if user:
        container_config["User"] = user
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": container_config,
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                         "history": [{"created_by": "modelops.sandbox.realnode.images"}]}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [reference], "Layers": ["layer/layer.tar"]}]).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w") as tar:
        for name, data in (("layer/layer.tar", layer), (config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


def import_image(ctr: Path, socket: Path, archive: Path | None, stdin: int | None = None) -> str:
    """``ctr -n k8s.io images import`` of a ``docker save`` archive (a path, or with ``archive=None``
    the file descriptor ``stdin``) into the node's containerd, unpacked for its overlayfs
    snapshotter; returns ctr's output. Raises ImageError on failure."""
    argv = [str(ctr), "--address", str(socket), "-n", "k8s.io", "images", "import", "--snapshotter", "overlayfs",
            str(archive) if archive is not None else "-"]
    result = subprocess.run(argv, stdin=stdin, capture_output=True, text=True, check=False, timeout=900)
    if result.returncode != 0:
        raise ImageError(f"{' '.join(argv)}: exit {result.returncode}: {result.stderr[-2000:]}")
    return result.stdout


#: busybox applets linked in :func:`busybox_image` (``httpd`` serves the node tests' HTTP).
BUSYBOX_APPLETS = ("sh", "echo", "cat", "sleep", "httpd", "ls", "mkdir", "wget", "ssl_client", "env", "hostname",
                   "ip", "id", "nslookup", "nc", "grep", "head", "true", "false")


def busybox_image(out: Path, reference: str, busybox: Path = Path("/bin/busybox")) -> Path:
    """A small test image from this machine's static busybox (Debian's ``busybox-static``): the
    binary plus :data:`BUSYBOX_APPLETS` as links in ``/bin``, ``Cmd ["sh"]``. Raises ImageError
    when ``busybox`` is missing."""
    if not busybox.is_file():
        raise ImageError(f"{busybox} not found (Debian package busybox-static)")
    links = {f"/bin/{applet}": "busybox" for applet in BUSYBOX_APPLETS}
    return write_image_tar(out, reference, {"/bin/busybox": busybox}, symlinks=links, cmd=["sh"])
