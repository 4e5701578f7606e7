"""The real node's image archives (``docker save`` format) and configuration builders."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from modelops.sandbox.realnode import config
from modelops.sandbox.realnode.images import write_image_tar


def test_image_archive_has_the_docker_save_layout_with_matching_digests(tmp_path: Path) -> None:
    tool = tmp_path / "tool"
    tool.write_bytes(b"#!/bin/sh\necho hi\n")
    tool.chmod(0o755)
    archive = write_image_tar(tmp_path / "img.tar", "example.test/tool:1", {"/usr/bin/tool": tool},
                              symlinks={"/bin/t": "/usr/bin/tool"}, entrypoint=["/usr/bin/tool"], user="1000")
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest[0]["RepoTags"] == ["example.test/tool:1"]
        config_bytes = tar.extractfile(manifest[0]["Config"]).read()  # type: ignore[union-attr]
        layer_bytes = tar.extractfile(manifest[0]["Layers"][0]).read()  # type: ignore[union-attr]
    assert manifest[0]["Config"] == hashlib.sha256(config_bytes).hexdigest() + ".json"
    image = json.loads(config_bytes)
    assert image["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer_bytes).hexdigest()]
    assert image["config"]["Entrypoint"] == ["/usr/bin/tool"] and image["config"]["User"] == "1000"
    with tarfile.open(fileobj=io.BytesIO(layer_bytes)) as layer:
        members = {m.name: m for m in layer.getmembers()}
        assert members["usr"].isdir() and members["usr/bin"].isdir()  # parents come first
        assert list(members).index("usr/bin") < list(members).index("usr/bin/tool")
        assert members["usr/bin/tool"].mode & 0o777 == 0o755 and members["usr/bin/tool"].uid == 0
        assert layer.extractfile("usr/bin/tool").read() == tool.read_bytes()  # type: ignore[union-attr]
        assert members["bin/t"].issym() and members["bin/t"].linkname == "/usr/bin/tool"


def test_containerd_runs_pods_with_cgroupfs_like_the_kubelet_and_clamped_oom_scores(tmp_path: Path) -> None:
    layout = config.Layout(tmp_path)
    toml = config.containerd_config(layout)
    kubelet = config.kubelet_config(layout, ca=tmp_path / "ca.crt", cert=tmp_path / "c", key=tmp_path / "k",
                                    address=config.GATEWAY, port=10250, healthz_port=10248)
    assert ("SystemdCgroup = false" in toml) == (kubelet["cgroupDriver"] == "cgroupfs")
    assert "restrict_oom_score_adj = true" in toml  # no CAP_SYS_RESOURCE on these machines
    assert kubelet["containerRuntimeEndpoint"] == f"unix://{layout.socket}" and f'address = "{layout.socket}"' in toml
    assert f'conf_dir = "{layout.cni_conf_dir}"' in toml
    bridge = config.cni_conflist(layout)["plugins"][0]
    assert bridge["ipMasq"] is False and bridge["ipam"]["ranges"][0][0]["gateway"] == config.GATEWAY
