{{/* Names, labels and values shared by the templates. */}}

{{- define "modelops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or the release name when it already contains the chart name. */}}
{{- define "modelops.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "modelops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object; pass a dict with "ctx" (the root context) and "component". */}}
{{- define "modelops.labels" -}}
helm.sh/chart: {{ include "modelops.chart" .ctx }}
{{ include "modelops.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: modelops
{{- end }}

{{- define "modelops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelops.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "modelops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modelops.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "modelops.operatorImage" -}}
{{- printf "%s:%s" .Values.operator.image.repository (default .Chart.AppVersion .Values.operator.image.tag) }}
{{- end }}

{{- define "modelops.runtimeImage" -}}
{{- printf "%s:%s" .Values.runtime.image.repository (default .Chart.AppVersion .Values.runtime.image.tag) }}
{{- end }}

{{- define "modelops.mlflowImage" -}}
{{- if .Values.mlflow.image.repository }}
{{- printf "%s:%s" .Values.mlflow.image.repository (default .Chart.AppVersion .Values.mlflow.image.tag) }}
{{- else }}
{{- include "modelops.runtimeImage" . }}
{{- end }}
{{- end }}

{{- define "modelops.mlflowName" -}}
{{- printf "%s-mlflow" (include "modelops.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* In-cluster URL of the embedded MLflow, reachable from pods in any namespace. */}}
{{- define "modelops.mlflowServiceUrl" -}}
{{- printf "http://%s.%s.svc.%s:%v" (include "modelops.mlflowName" .) .Release.Namespace .Values.config.clusterDomain .Values.mlflow.service.port }}
{{- end }}

{{- define "modelops.mlflowTrackingUri" -}}
{{- if .Values.config.mlflowTrackingUri }}
{{- .Values.config.mlflowTrackingUri }}
{{- else if .Values.mlflow.enabled }}
{{- include "modelops.mlflowServiceUrl" . }}
{{- else }}
{{- fail "set config.mlflowTrackingUri, or mlflow.enabled=true for the embedded MLflow" }}
{{- end }}
{{- end }}

{{/* Namespaces that get the prediction-log claim. */}}
{{- define "modelops.predictionLogNamespaces" -}}
{{- $ns := .Values.predictionLog.persistence.namespaces | default .Values.watchNamespaces | default (list .Release.Namespace) }}
{{- toJson $ns }}
{{- end }}

{{/* Whether more than one operator replica runs (one leads through the Lease, the others stand by). */}}
{{- define "modelops.replicated" -}}
{{- if gt (int .Values.operator.replicas) 1 }}true{{- end }}
{{- end }}
