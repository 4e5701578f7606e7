"""Container images → local commands.

The sandbox cannot pull or run images. An image is "available" when its repository maps to an
:class:`ImageSpec`: the entrypoint used when a container sets no ``command``, directories put
first on ``PATH`` (so a ``command: [modelops-runtime, train]`` resolves to this checkout's console
script) and the image's environment. The operator's runtime image (repository
``modelops-runtime``, any registry prefix and tag) is always mapped to the console scripts in
the same bin directory as ``sys.executable``. Tests register more mappings (e.g. a python image)
through :class:`ImageResolver`; any other image fails with ``ErrImagePull``.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ...contract import RUNTIME_ENTRYPOINT

#: Repository name of the runtime image (see settings.DEFAULT_RUNTIME_IMAGE).
RUNTIME_REPOSITORY = "modelops-runtime"


@dataclass(frozen=True)
class ImageSpec:
    """What a mapped image provides: ``entrypoint`` argv prefix, ``path`` dirs, ``env`` defaults."""

    entrypoint: tuple[str, ...] = ()
    path: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)


class ImagePullError(Exception):
    """The image is not available in the sandbox (reported as ``ErrImagePull``)."""


def image_repository(image: str) -> str:
    """The repository of an image reference, without tag or digest.

    ``ghcr.io/org/modelops-runtime:0.1.0`` → ``ghcr.io/org/modelops-runtime``.
    """
    ref = image.split("@", 1)[0]
    last_slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > last_slash:
        ref = ref[:colon]
    return ref


def venv_bin() -> Path:
    """The bin directory of the running interpreter's environment (holds the console scripts)."""
    return Path(sys.executable).parent


def runtime_image_spec() -> ImageSpec:
    """The runtime image: ``modelops-runtime`` console script from this checkout's environment."""
    bin_dir = venv_bin()
    return ImageSpec(
        entrypoint=(str(bin_dir / RUNTIME_ENTRYPOINT),),
        path=(str(bin_dir),),
        env={"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"},
    )


def parse_image_option(option: str) -> tuple[str, ImageSpec]:
    """Parse ``REPOSITORY=ENTRYPOINT`` (entrypoint shell-split) into a mapping entry.

    Raises ValueError when there is no ``=``.
    """
    repo, sep, entry = option.partition("=")
    if not sep or not repo:
        raise ValueError(f"image mapping must look like REPOSITORY=ENTRYPOINT, got {option!r}")
    argv = tuple(shlex.split(entry))
    path = (str(Path(argv[0]).parent),) if argv and Path(argv[0]).is_absolute() else ()
    return repo, ImageSpec(entrypoint=argv, path=(*path, str(venv_bin())), env={"PYTHONUNBUFFERED": "1"})


class ImageResolver:
    """Maps image references to :class:`ImageSpec`; the runtime image is always known."""

    def __init__(self, extra: Mapping[str, ImageSpec] | None = None) -> None:
        self.images: dict[str, ImageSpec] = {RUNTIME_REPOSITORY: runtime_image_spec()}
        self.images.update(extra or {})

    def resolve(self, image: str) -> ImageSpec:
        """The spec of an image, matched by full repository or its last path component.

        Raises ImagePullError with a message naming the image and the known repositories.
        """
        repo = image_repository(image)
        for key in (repo, repo.rsplit("/", 1)[-1]):
            if key in self.images:
                return self.images[key]
        known = ", ".join(sorted(self.images))
        raise ImagePullError(
            f'image "{image}" is not available in the sandbox: only these repositories map to local commands: {known}'
        )
