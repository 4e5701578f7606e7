#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager and kube-scheduler (and, with --node, the
# node's kubelet and kube-proxy, CoreDNS from its own module in hack/coredns, and the pause binary of
# the pod sandbox image) from their published Go modules into a cache outside the repository:
#   ${MODELOPS_KUBE_CACHE:-$HOME/.cache/modelops/kube}/<release>/bin
# Reuses binaries already there. Prints each step and how long it took.
# Usage: hack/kube/build.sh [--node] [--print-bindir]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
release="$(awk '$1 == "k8s.io/kubernetes" {print $2; exit}' "$here/go.mod")"
etcd_release="$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2; exit}' "$here/go.mod")"
bindir="${MODELOPS_KUBE_CACHE:-$HOME/.cache/modelops/kube}/$release/bin"
node=0
for arg in "$@"; do
  case "$arg" in
    --print-bindir) echo "$bindir"; exit 0 ;;
    --node) node=1 ;;
    *) echo "hack/kube/build.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done
command -v go >/dev/null || { echo "hack/kube/build.sh: the Go toolchain (go) is not on PATH" >&2; exit 2; }
mkdir -p "$bindir"
minor="${release#v1.}"; minor="${minor%%.*}"
ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=$release \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
declare -A pkgs=(
  [etcd]=go.etcd.io/etcd/server/v3
  [kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
  [kube-controller-manager]=k8s.io/kubernetes/cmd/kube-controller-manager
  [kube-scheduler]=k8s.io/kubernetes/cmd/kube-scheduler
  [kubelet]=k8s.io/kubernetes/cmd/kubelet
  [kube-proxy]=k8s.io/kubernetes/cmd/kube-proxy
)
order=(etcd kube-apiserver kube-controller-manager kube-scheduler)
[ "$node" = 1 ] && order+=(kubelet kube-proxy)
start=$SECONDS
cd "$here"
for name in "${order[@]}"; do
  if [ -x "$bindir/$name" ]; then echo "kube build: $name present ($bindir)"; continue; fi
  t0=$SECONDS
  echo "kube build: $name ($release, etcd $etcd_release) from ${pkgs[$name]} ..."
  flags="$ldflags"
  [ "$name" = etcd ] && flags="-s -w"
  CGO_ENABLED=0 go build -trimpath -ldflags "$flags" -o "$bindir/$name.tmp" "${pkgs[$name]}"
  mv "$bindir/$name.tmp" "$bindir/$name"
  echo "kube build: $name done in $((SECONDS - t0)) s"
done
if [ "$node" = 1 ] && [ ! -x "$bindir/coredns" ]; then
  t0=$SECONDS
  coredns_release="$(awk '$1 == "require" && $2 == "github.com/coredns/coredns" {print $3; exit}' "$here/../coredns/go.mod")"
  echo "kube build: coredns ($coredns_release) from github.com/coredns/coredns ..."
  (cd "$here/../coredns" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bindir/coredns.tmp" \
    github.com/coredns/coredns)
  mv "$bindir/coredns.tmp" "$bindir/coredns"
  echo "kube build: coredns done in $((SECONDS - t0)) s"
fi
if [ "$node" = 1 ] && [ ! -x "$bindir/pause" ]; then
  # The pod sandbox ("pause") process: Kubernetes' own C source, compiled as its Makefile does.
  command -v gcc >/dev/null || { echo "hack/kube/build.sh: --node needs gcc and libc6-dev (pause)" >&2; exit 2; }
  src="$(go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c"
  gcc -Os -static -DVERSION="$release" -o "$bindir/pause.tmp" "$src"
  mv "$bindir/pause.tmp" "$bindir/pause"
  echo "kube build: pause compiled from $src"
fi
echo "kube build: all present in $bindir ($((SECONDS - start)) s)"
