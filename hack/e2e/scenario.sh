#!/usr/bin/env bash
# The end-to-end scenario shared by hack/kind-e2e.sh (a kind cluster) and hack/node-e2e.sh (the
# sandbox's real control plane with a real kubelet node): the caller provides a cluster in
# KUBECONFIG with both images on its node, then
#   1. installs the chart with the embedded MLflow (`helm install`, or Helm's Go library through
#      helm-python-sdk when no helm binary is on PATH: hack/e2e/helm.py);
#   2. applies manifests/samples (ModelVersions on scikit-learn's breast cancer data + a ModelMonitor);
#   3. waits until the ModelVersion is Ready (trained, registered, promoted, serving);
#   4. sends one prediction through `kubectl port-forward` to the serving Service;
#   5. runs the ModelMonitor's drift CronJob once (a Job from it) and waits until it completes;
#   6. deletes the samples and the release.
# Source it, set the variables below (defaults shown), and call run_scenario.
# shellcheck disable=SC2034  # variables are read by the sourcing scripts
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NAMESPACE="${NAMESPACE:-modelops-system}"
MODELS_NAMESPACE="${MODELS_NAMESPACE:-ml-e2e}"
TIMEOUT="${TIMEOUT:-20m}"
LOCAL_PORT="${LOCAL_PORT:-18080}"
PYTHON="${PYTHON:-python3}"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "${ROOT}/pyproject.toml" | head -n 1)"
OPERATOR_IMAGE="modelops-operator:${VERSION}"
RUNTIME_IMAGE="modelops-runtime:${VERSION}"
MODEL_VERSION="breast-cancer-1-0-0"
SERVING_SERVICE="breast-cancer-production"
MODEL_MONITOR="breast-cancer-production"
DRIFT_CRONJOB="breast-cancer-production-drift"
# The first row of scikit-learn's breast cancer data (its 30 features, in the dataset's order).
ROW='[17.99,10.38,122.8,1001.0,0.1184,0.2776,0.3001,0.1471,0.2419,0.07871,1.095,0.9053,8.589,153.4,0.006399,0.04904,0.05373,0.01587,0.03003,0.006193,25.38,17.33,184.6,2019.0,0.1622,0.6656,0.7119,0.2654,0.4601,0.1189]'
# Extra `--set key=value` arguments for the chart (a cluster's storage, pull policy).
CHART_SETS=("${CHART_SETS[@]+"${CHART_SETS[@]}"}")

PORT_FORWARD_PID=""

log() {
  printf '\n==> %s\n' "$*"
}

require() {
  local missing=0 tool
  for tool in "$@"; do
    if ! command -v "${tool}" >/dev/null 2>&1; then
      echo "e2e: ${tool} is required but not on PATH" >&2
      missing=1
    fi
  done
  if [ "${missing}" -ne 0 ]; then
    exit 2
  fi
}

diagnose() {
  log "Diagnostics"
  kubectl get nodes -o wide || true
  kubectl get mv,mm -A -o wide || true
  kubectl get jobs,cronjobs,deploy,pods,svc,pvc -A -o wide || true
  kubectl -n "${MODELS_NAMESPACE}" describe mv || true
  kubectl -n "${NAMESPACE}" describe pods || true
  kubectl -n "${NAMESPACE}" logs deploy/modelops --tail=200 || true
  kubectl -n "${NAMESPACE}" logs deploy/modelops-mlflow --tail=50 || true
  kubectl -n "${MODELS_NAMESPACE}" logs -l app.kubernetes.io/component=training --tail=100 || true
  kubectl -n "${MODELS_NAMESPACE}" logs -l app.kubernetes.io/component=monitoring --tail=100 || true
  kubectl -n "${MODELS_NAMESPACE}" get events --sort-by=.lastTimestamp || true
}

stop_port_forward() {
  if [ -n "${PORT_FORWARD_PID}" ]; then
    kill "${PORT_FORWARD_PID}" 2>/dev/null || true
    PORT_FORWARD_PID=""
  fi
}

helm_install() {
  local sets=(--set "operator.image.tag=${VERSION}" --set "runtime.image.tag=${VERSION}" --set mlflow.enabled=true)
  local extra
  for extra in "${CHART_SETS[@]+"${CHART_SETS[@]}"}"; do
    sets+=(--set "${extra}")
  done
  if command -v helm >/dev/null 2>&1; then
    helm install modelops "${ROOT}/helm/modelops" \
      --namespace "${NAMESPACE}" --create-namespace "${sets[@]}" --wait --timeout 10m
  else
    "${PYTHON}" "${ROOT}/hack/e2e/helm.py" install modelops "${ROOT}/helm/modelops" \
      --namespace "${NAMESPACE}" --create-namespace "${sets[@]}" --wait --timeout 10m
  fi
}

helm_uninstall() {
  if command -v helm >/dev/null 2>&1; then
    helm uninstall modelops --namespace "${NAMESPACE}" --wait --timeout 5m
  else
    "${PYTHON}" "${ROOT}/hack/e2e/helm.py" uninstall modelops --namespace "${NAMESPACE}" --wait --timeout 5m
  fi
}

predict() {
  local features body response attempt
  features="$(kubectl -n "${MODELS_NAMESPACE}" get "mv/${MODEL_VERSION}" -o jsonpath='{.status.model.features}')"
  if [ -z "${features}" ]; then
    echo "e2e: mv/${MODEL_VERSION} reports no status.model.features" >&2
    return 1
  fi
  kubectl -n "${MODELS_NAMESPACE}" rollout status "deploy/${SERVING_SERVICE}" --timeout=5m
  kubectl -n "${MODELS_NAMESPACE}" port-forward "svc/${SERVING_SERVICE}" "${LOCAL_PORT}:80" >/dev/null 2>&1 &
  PORT_FORWARD_PID=$!
  for attempt in $(seq 1 30); do
    if curl -fsS "http://127.0.0.1:${LOCAL_PORT}/ping" >/dev/null 2>&1; then
      break
    fi
    if [ "${attempt}" -eq 30 ]; then
      echo "e2e: the model server did not answer /ping through the port-forward" >&2
      return 1
    fi
    sleep 2
  done
  body="{\"dataframe_split\": {\"columns\": ${features}, \"data\": [${ROW}]}}"
  response="$(curl -fsS -X POST "http://127.0.0.1:${LOCAL_PORT}/invocations" \
    -H 'Content-Type: application/json' --data "${body}")"
  echo "prediction: ${response}"
  stop_port_forward
  case "${response}" in
    *'"predictions"'*) ;;
    *)
      echo "e2e: unexpected response from /invocations" >&2
      return 1
      ;;
  esac
}

run_drift() {
  kubectl -n "${MODELS_NAMESPACE}" get "cronjob/${DRIFT_CRONJOB}"
  kubectl -n "${MODELS_NAMESPACE}" create job "${DRIFT_CRONJOB}-e2e" --from="cronjob/${DRIFT_CRONJOB}"
  kubectl -n "${MODELS_NAMESPACE}" wait --for=condition=Complete "job/${DRIFT_CRONJOB}-e2e" --timeout=10m
  kubectl -n "${MODELS_NAMESPACE}" logs "job/${DRIFT_CRONJOB}-e2e" --tail=20 || true
  kubectl -n "${MODELS_NAMESPACE}" get "mm/${MODEL_MONITOR}" -o wide
}

run_scenario() {
  # First: the chart may create the shared prediction-log claim in it.
  kubectl create namespace "${MODELS_NAMESPACE}" --dry-run=client -o yaml | kubectl apply -f -

  log "Installing the chart with the embedded MLflow"
  helm_install

  log "Applying the samples in namespace ${MODELS_NAMESPACE}"
  kubectl -n "${MODELS_NAMESPACE}" apply -k "${ROOT}/manifests/samples"

  log "Waiting for ModelVersion ${MODEL_VERSION} to become Ready (up to ${TIMEOUT})"
  kubectl -n "${MODELS_NAMESPACE}" wait --for=condition=Ready "mv/${MODEL_VERSION}" --timeout="${TIMEOUT}"
  kubectl -n "${MODELS_NAMESPACE}" get mv,mm -o wide

  log "Sending a prediction to svc/${SERVING_SERVICE}"
  predict

  log "Running the drift CronJob ${DRIFT_CRONJOB} once"
  run_drift

  log "Deleting the samples and the release"
  kubectl -n "${MODELS_NAMESPACE}" delete -k "${ROOT}/manifests/samples" --wait=true --timeout=5m
  helm_uninstall
}
