#!/usr/bin/env bash
# End-to-end test on a real Kubernetes cluster in Docker (kind), for users and release checks:
#   1. create a kind cluster;
#   2. build the operator and runtime images and load them into the cluster;
#   3. helm install the chart with the embedded MLflow;
#   4. apply manifests/samples (a ModelVersion on scikit-learn's breast cancer data + a ModelMonitor);
#   5. wait until the ModelVersion is Ready (trained, registered, promoted, serving);
#   6. send one prediction through `kubectl port-forward` to the serving Service;
#   7. delete everything (the cluster), also on failure.
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

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER="${CLUSTER:-modelops-e2e}"
NAMESPACE="${NAMESPACE:-modelops-system}"
MODELS_NAMESPACE="${MODELS_NAMESPACE:-ml-e2e}"
TIMEOUT="${TIMEOUT:-20m}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
LOCAL_PORT="${LOCAL_PORT:-18080}"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "${ROOT}/pyproject.toml" | head -n 1)"
OPERATOR_IMAGE="modelops-operator:${VERSION}"
RUNTIME_IMAGE="modelops-runtime:${VERSION}"
MODEL_VERSION="breast-cancer-1-0-0"
SERVING_SERVICE="breast-cancer-production"
# The first row of scikit-learn's breast cancer data (its 30 features, in the dataset's order).
ROW='[17.99,10.38,122.8,1001.0,0.1184,0.2776,0.3001,0.1471,0.2419,0.07871,1.095,0.9053,8.589,153.4,0.006399,0.04904,0.05373,0.01587,0.03003,0.006193,25.38,17.33,184.6,2019.0,0.1622,0.6656,0.7119,0.2654,0.4601,0.1189]'

PORT_FORWARD_PID=""
CLUSTER_CREATED=0

log() {
  printf '\n==> %s\n' "$*"
}

require() {
  local missing=0 tool
  for tool in "$@"; do
    if ! command -v "${tool}" >/dev/null 2>&1; then
      echo "kind-e2e: ${tool} is required but not on PATH" >&2
      missing=1
    fi
  done
  if [ "${missing}" -ne 0 ]; then
    exit 2
  fi
}

diagnose() {
  log "Diagnostics"
  kubectl get mv,mm -A -o wide || true
  kubectl get jobs,deploy,pods,svc,pvc -A -o wide || true
  kubectl -n "${MODELS_NAMESPACE}" describe mv || true
  kubectl -n "${NAMESPACE}" logs deploy/modelops --tail=200 || true
  kubectl -n "${NAMESPACE}" logs deploy/modelops-mlflow --tail=50 || true
  kubectl -n "${MODELS_NAMESPACE}" logs -l app.kubernetes.io/component=training --tail=100 || true
  kubectl -n "${MODELS_NAMESPACE}" get events --sort-by=.lastTimestamp || true
}

cleanup() {
  local status=$?
  if [ -n "${PORT_FORWARD_PID}" ]; then
    kill "${PORT_FORWARD_PID}" 2>/dev/null || true
  fi
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

  log "Installing the chart with the embedded MLflow"
  helm install modelops "${ROOT}/helm/modelops" \
    --namespace "${NAMESPACE}" --create-namespace \
    --set "operator.image.tag=${VERSION}" \
    --set "runtime.image.tag=${VERSION}" \
    --set mlflow.enabled=true \
    --wait --timeout 10m

  log "Applying the samples in namespace ${MODELS_NAMESPACE}"
  kubectl create namespace "${MODELS_NAMESPACE}"
  kubectl -n "${MODELS_NAMESPACE}" apply -k "${ROOT}/manifests/samples"

  log "Waiting for ModelVersion ${MODEL_VERSION} to become Ready (up to ${TIMEOUT})"
  kubectl -n "${MODELS_NAMESPACE}" wait --for=condition=Ready "mv/${MODEL_VERSION}" --timeout="${TIMEOUT}"
  kubectl -n "${MODELS_NAMESPACE}" get mv,mm -o wide

  log "Sending a prediction to svc/${SERVING_SERVICE}"
  local features body response
  features="$(kubectl -n "${MODELS_NAMESPACE}" get "mv/${MODEL_VERSION}" -o jsonpath='{.status.model.features}')"
  if [ -z "${features}" ]; then
    echo "kind-e2e: mv/${MODEL_VERSION} reports no status.model.features" >&2
    exit 1
  fi
  kubectl -n "${MODELS_NAMESPACE}" rollout status "deploy/${SERVING_SERVICE}" --timeout=5m
  kubectl -n "${MODELS_NAMESPACE}" port-forward "svc/${SERVING_SERVICE}" "${LOCAL_PORT}:80" >/dev/null 2>&1 &
  PORT_FORWARD_PID=$!
  local attempt
  for attempt in $(seq 1 30); do
    if curl -fsS "http://127.0.0.1:${LOCAL_PORT}/ping" >/dev/null 2>&1; then
      break
    fi
    if [ "${attempt}" -eq 30 ]; then
      echo "kind-e2e: the model server did not answer /ping through the port-forward" >&2
      exit 1
    fi
    sleep 2
  done
  body="{\"dataframe_split\": {\"columns\": ${features}, \"data\": [${ROW}]}}"
  response="$(curl -fsS -X POST "http://127.0.0.1:${LOCAL_PORT}/invocations" \
    -H 'Content-Type: application/json' --data "${body}")"
  echo "prediction: ${response}"
  case "${response}" in
    *'"predictions"'*) ;;
    *)
      echo "kind-e2e: unexpected response from /invocations" >&2
      exit 1
      ;;
  esac

  log "Deleting the samples and the release"
  kubectl -n "${MODELS_NAMESPACE}" delete -k "${ROOT}/manifests/samples" --wait=true --timeout=5m
  helm uninstall modelops --namespace "${NAMESPACE}" --wait --timeout 5m
}

main "$@"
