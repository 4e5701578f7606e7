# The README's two commands: `make demo` (the main job) and `make test` (the whole test suite).
# Each creates .venv and installs the project into it when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint crds generate kind-e2e node-e2e bench clean venv e2e unit kube images

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/modelops demo

# The real-control-plane tier needs Go (etcd and Kubernetes are built from their Go modules once,
# into ~/.cache/modelops/kube); without it the tier is skipped with a loud notice.
test: $(STAMP) kube
	$(BIN)/python -m pytest -q -ra

# As root, also the real node's kubelet, kube-proxy and pause (tests/realnode needs root).
kube: $(STAMP)
	@if command -v go >/dev/null 2>&1; then $(BIN)/modelops sandbox build $$([ "$$(id -u)" = 0 ] && echo --node); \
	else echo "!!!!! Go is not on PATH: the real Kubernetes control plane cannot be built;" \
	          "its tests will be SKIPPED and the end-to-end tests will use the API emulator !!!!!"; fi

# modelops-operator and modelops-runtime from their Dockerfiles, on a debootstrap-made Debian base,
# with nothing pulled from an image registry (root, a Docker engine, debootstrap). See docs/install.md.
images: $(STAMP)
	PYTHON=$(BIN)/python bash hack/images/build.sh

unit: $(STAMP)
	$(BIN)/python -m pytest -q -ra -m "not e2e"

e2e: $(STAMP) kube
	$(BIN)/python -m pytest -q -ra -m e2e

lint: $(STAMP)
	$(BIN)/ruff check operator serving_image tests benchmarks
	$(BIN)/mypy

crds: $(STAMP)
	$(BIN)/python -m modelops.api.crdgen --out crds
	$(BIN)/python -m modelops.api.docgen --out docs/api.md
	cp crds/modelversions.yaml crds/modelmonitors.yaml helm/modelops/crds/
	cp crds/modelversions.yaml crds/modelmonitors.yaml manifests/base/crds/

# Everything generated from the code: the CRDs (and their copies in the chart and the kustomize
# base) and the RBAC rules (helm/modelops/templates/_rbac_rules.tpl, manifests/base/rbac.yaml).
generate: crds
	$(BIN)/python -m modelops.rbac --write

# Real-cluster end-to-end on kind (kind, docker, helm, kubectl): for users' machines.
kind-e2e:
	bash hack/kind-e2e.sh

# The same scenario (hack/e2e/scenario.sh) on this machine: the real control plane, a real kubelet
# node with containerd, and the chart installed with the images `make images` built (root).
node-e2e: $(STAMP) kube
	bash hack/node-e2e.sh

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
