#!/usr/bin/env bash
# End-to-end test on a real Kubernetes cluster in Docker (kind), for users and release checks:
#   1. create a kind cluster;
#   2. build the operator and runtime images and load them into the cluster;
#   3. the scenario of hack/e2e/scenario.sh (shared with hack/node-e2e.sh): helm install the chart
#      with the embedded MLflow, apply manifests/samples, wait until the ModelVersion is Ready,
#      one prediction through `kubectl port-forward` to the serving Service, one drift Job from
#      the ModelMonitor's CronJob, then delete the samples and the release;
#   4. delete everything (the cluster), also on failure.
#
# Needs: kind, docker, helm (v3.8+ or v4), kubectl and curl on PATH. Run from anywhere:
#   make kind-e2e            or   hack/kind-e2e.sh
# Environment:
#   CLUSTER=modelops-e2e     kind cluster name (created and deleted by this script)
#   NAMESPACE=modelops-system  namespace of the operator and MLflow
#   MODELS_NAMESPACE=ml-e2e  namespace of the sample ModelVersion and ModelMonitor
#   TIMEOUT=20m              how long to wait for the ModelVersion to become Ready
#   KEEP_CLUSTER=1           keep the cluster afterwards (for debugging; delete it with
#                            `kind delete cluster --name modelops-e2e`)
set -euo pipefail

# shellcheck source=hack/e2e/scenario.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/e2e/scenario.sh"
CLUSTER="${CLUSTER:-modelops-e2e}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
CLUSTER_CREATED=0

cleanup() {
  local status=$?
  stop_port_forward
  if [ "${status}" -ne 0 ] && [ "${CLUSTER_CREATED}" -eq 1 ]; then
    diagnose
  fi
  if [ "${CLUSTER_CREATED}" -eq 1 ]; then
    if [ "${KEEP_CLUSTER}" = "1" ]; then
      log "Keeping cluster ${CLUSTER} (kind delete cluster --name ${CLUSTER})"
    else
      log "Deleting cluster ${CLUSTER}"
      kind delete cluster --name "${CLUSTER}" || true
    fi
  fi
  if [ "${status}" -eq 0 ]; then
    log "kind-e2e passed"
  else
    log "kind-e2e FAILED (exit ${status})"
  fi
  exit "${status}"
}

main() {
  require kind docker helm kubectl curl
  if [ -z "${VERSION}" ]; then
    echo "kind-e2e: cannot read the version from pyproject.toml" >&2
    exit 2
  fi
  trap cleanup EXIT

  log "Creating kind cluster ${CLUSTER}"
  kind create cluster --name "${CLUSTER}" --wait 180s
  CLUSTER_CREATED=1
  kubectl config use-context "kind-${CLUSTER}"

  log "Building ${OPERATOR_IMAGE} and ${RUNTIME_IMAGE}"
  docker build -f "${ROOT}/operator/Dockerfile" -t "${OPERATOR_IMAGE}" --build-arg "VERSION=${VERSION}" "${ROOT}"
  docker build -f "${ROOT}/serving_image/Dockerfile" -t "${RUNTIME_IMAGE}" --build-arg "VERSION=${VERSION}" "${ROOT}"

  log "Loading the images into the cluster"
  kind load docker-image --name "${CLUSTER}" "${OPERATOR_IMAGE}" "${RUNTIME_IMAGE}"

  run_scenario
}

main "$@"
