#!/usr/bin/env bash
# Builds the modelops-operator and modelops-runtime images from operator/Dockerfile and
# serving_image/Dockerfile with nothing pulled from any image registry:
#   1. base: a Debian bookworm root file system made by debootstrap (minbase + python3 +
#      ca-certificates), stripped of apt's caches, docs and locales, with pip installed, and
#      `docker import`ed as ${BASE_IMAGE} (stands in for python:3.11-slim-bookworm);
#   2. wheelhouse: the package's `runtime` and `operator` extras as wheels, built on the host with
#      its pip and cache into hack/images/wheelhouse (git-ignored);
#   3. `docker build` of both Dockerfiles on that base, offline (PIP_NO_INDEX=1, the wheelhouse
#      as --find-links), then their sizes.
# Reuses the base image when present (FORCE_BASE=1 rebuilds it). Run as root (debootstrap).
#   make images          or   hack/images/build.sh
# Environment:
#   PYTHON=python3       the host interpreter that builds the wheels (must be 3.11, the base's)
#   DOCKER=docker        the Docker client (needs BuildKit: buildx, or the docker.io package's
#                        client with DOCKER_BUILDKIT=1)
#   DEBIAN_MIRROR=...    debootstrap's mirror (default: the first URIs of this machine's apt sources)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/hack/images"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/pyproject.toml" | head -n 1)"
BASE_IMAGE="${BASE_IMAGE:-modelops-base:bookworm-python3.11}"
PYTHON="${PYTHON:-python3}"
start=$SECONDS

step() { printf 'images: %s\n' "$*"; }
die() { printf 'images: %s\n' "$*" >&2; exit 2; }

# The client: BuildKit is needed for the Dockerfiles' RUN --mount. Docker's own CLI builds with
# buildx; without it, the docker.io package's client still speaks BuildKit with DOCKER_BUILDKIT=1.
DOCKER="${DOCKER:-docker}"
if ! "$DOCKER" buildx version >/dev/null 2>&1; then
  if [ -x /usr/bin/docker ] && [ "$(command -v "$DOCKER")" != /usr/bin/docker ]; then DOCKER=/usr/bin/docker; fi
  export DOCKER_BUILDKIT=1
fi
"$DOCKER" info >/dev/null 2>&1 || die "no Docker engine answers (start dockerd first)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || die "$PYTHON is not Python 3.11; the base image's Debian python3 is 3.11 and the wheels must match it"

# 1. The base image.
if [ "${FORCE_BASE:-0}" != 1 ] && "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  step "base $BASE_IMAGE present"
else
  command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
  [ "$(id -u)" = 0 ] || die "debootstrap needs root"
  mirror="${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)}"
  [ -n "$mirror" ] || mirror="$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null)"
  [ -n "$mirror" ] || die "no Debian mirror found in apt's sources; set DEBIAN_MIRROR"
  t0=$SECONDS
  rootfs="$(mktemp -d /tmp/modelops-rootfs.XXXXXX)"
  trap 'rm -rf "$rootfs"' EXIT
  step "base: debootstrap bookworm (minbase, python3) ..."
  debootstrap --variant=minbase --include=python3,ca-certificates bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { tail -n 20 "$rootfs.log" >&2; die "debootstrap failed"; }
  rm -f "$rootfs.log"
  # pip as python:3.11-slim has it (in /usr/local), and `python` on PATH; the image is no apt-managed
  # system, so PEP 668's marker goes.
  "$PYTHON" -m pip download -q --no-deps --dest "$rootfs/tmp" pip
  pip_wheel="$(find "$rootfs/tmp" -maxdepth 1 -name 'pip-*.whl' | head -n 1)"
  rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
  chroot "$rootfs" python3 "/tmp/$(basename "$pip_wheel")/pip" install -q --no-index --no-compile \
    --disable-pip-version-check --root-user-action=ignore "/tmp/$(basename "$pip_wheel")"
  ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
  rm -rf "$rootfs"/tmp/* "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
    "$rootfs"/var/cache/debconf/*-old "$rootfs"/root/.cache
  find "$rootfs/usr/lib/python3" "$rootfs/usr/lib/python3.11" -name __pycache__ -prune -exec rm -rf {} + 2>/dev/null || true
  tar -C "$rootfs" --numeric-owner --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' -c . \
    | "$DOCKER" import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"; trap - EXIT
  step "base $BASE_IMAGE built in $((SECONDS - t0)) s"
fi

# 2. The wheelhouse, built by the host's pip (its cache makes a rebuild take seconds).
t0=$SECONDS
wheelhouse="$here/wheelhouse"
mkdir -p "$wheelhouse"
find "$wheelhouse" -name '*.whl' -delete
step "wheels: .[runtime,operator] with $PYTHON ..."
# hatchling: the package's build backend, which pip needs offline too.
"$PYTHON" -m pip wheel -q --wheel-dir "$wheelhouse" "${root}[runtime,operator]" pip hatchling
rm -f "$wheelhouse"/modelops-*.whl
step "wheels: $(find "$wheelhouse" -name '*.whl' | wc -l) in $((SECONDS - t0)) s ($(du -sh "$wheelhouse" | cut -f1))"

# 3. The two images, offline.
revision="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
for spec in modelops-runtime:serving_image/Dockerfile modelops-operator:operator/Dockerfile; do
  set -- "${spec%%:*}" "${spec#*:}"
  t0=$SECONDS
  step "build $1:$version from $2 ..."
  "$DOCKER" build -q -f "$root/$2" -t "$1:$version" \
    --build-arg PYTHON_IMAGE="$BASE_IMAGE" --build-arg PIP_NO_INDEX=1 \
    --build-arg VERSION="$version" --build-arg REVISION="$revision" --build-arg CREATED="$created" \
    "$root" >/dev/null
  step "build $1:$version done in $((SECONDS - t0)) s"
done
for image in "$BASE_IMAGE" "modelops-runtime:$version" "modelops-operator:$version"; do
  bytes="$("$DOCKER" image inspect --format '{{.Size}}' "$image")"
  printf 'images: %-40s %6d MB\n' "$image" "$((bytes / 1000000))"
done
step "all built in $((SECONDS - start)) s"
