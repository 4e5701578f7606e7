#!/usr/bin/env bash
# The kind end-to-end scenario (hack/e2e/scenario.sh) on our own machines: the sandbox's real
# control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) with a real node
# (the upstream kubelet, kube-proxy, containerd, runc, the CNI bridge), the images `make images`
# built imported into the node's containerd, and the chart installed with them:
#   1. `modelops sandbox up --control-plane real --node real --node-image ...` (no local MLflow or
#      operator: the chart brings both), unless KUBECONFIG names a running one (USE_KUBECONFIG=1).
#      The node's default StorageClass (local PersistentVolumes, docs/sandbox.md) binds the chart's
#      claims: the embedded MLflow's and the prediction log shared by serving pods and drift Jobs;
#   2. the shared scenario: helm install, samples, Ready, a prediction through the Service from a
#      real pod, one drift Job from the ModelMonitor's CronJob, delete;
#   3. `modelops sandbox down`, also on failure (after diagnostics; KEEP_SANDBOX=1 keeps it).
#
# Needs root, the images (make images), the real node's packages and binaries (docs/sandbox.md,
# "Real node"). Run from anywhere:   make node-e2e    or   hack/node-e2e.sh
# Environment: NAMESPACE, MODELS_NAMESPACE, TIMEOUT as hack/kind-e2e.sh; STATE_DIR (default: a new
# temporary folder); USE_KUBECONFIG=1 to run the scenario on the cluster in $KUBECONFIG (its node
# must already have the images) instead of starting a sandbox.
set -euo pipefail

# shellcheck source=hack/e2e/scenario.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/e2e/scenario.sh"
PYTHON="${ROOT}/.venv/bin/python"
PATH="${ROOT}/.venv/bin:${PATH}"
STATE_DIR="${STATE_DIR:-$(mktemp -d /tmp/modelops-node-e2e.XXXXXX)}"
USE_KUBECONFIG="${USE_KUBECONFIG:-0}"
KEEP_SANDBOX="${KEEP_SANDBOX:-0}"
SANDBOX_STARTED=0
CHART_SETS=(
  "operator.image.pullPolicy=IfNotPresent"
  "runtime.image.pullPolicy=IfNotPresent"
  "predictionLog.persistence.enabled=true"
  "predictionLog.persistence.namespaces={${MODELS_NAMESPACE}}"
)

cleanup() {
  local status=$?
  stop_port_forward
  if [ "${status}" -ne 0 ]; then
    diagnose
  fi
  if [ "${SANDBOX_STARTED}" -eq 1 ]; then
    if [ "${KEEP_SANDBOX}" = "1" ]; then
      log "Keeping the sandbox in ${STATE_DIR} (modelops sandbox down --state-dir ${STATE_DIR})"
    else
      log "Stopping the sandbox"
      modelops sandbox down --state-dir "${STATE_DIR}" || true
    fi
  fi
  if [ "${status}" -eq 0 ]; then
    log "node-e2e passed"
  else
    log "node-e2e FAILED (exit ${status})"
  fi
  exit "${status}"
}

main() {
  require kubectl curl docker
  if [ "${USE_KUBECONFIG}" != "1" ]; then
    local image archives=()
    for image in "${OPERATOR_IMAGE}" "${RUNTIME_IMAGE}"; do
      if ! docker image inspect "${image}" >/dev/null 2>&1; then
        echo "node-e2e: image ${image} is not built (make images)" >&2
        exit 2
      fi
      archives+=(--node-image "${STATE_DIR}/${image%%:*}.tar")
      docker save -o "${STATE_DIR}/${image%%:*}.tar" "${image}"
    done
    trap cleanup EXIT
    log "Starting the real control plane and the real node in ${STATE_DIR}"
    SANDBOX_STARTED=1
    modelops sandbox up --state-dir "${STATE_DIR}" --control-plane real --node real --no-mlflow --no-operator \
      "${archives[@]}"
    KUBECONFIG="$(modelops sandbox env --state-dir "${STATE_DIR}" | sed -n 's/^export KUBECONFIG=//p')"
    export KUBECONFIG
  else
    trap cleanup EXIT
  fi
  kubectl get nodes -o wide

  run_scenario
}

main "$@"
