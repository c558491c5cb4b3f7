{{/* Name of the chart, overridable. */}}
{{- define "siembridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects. */}}
{{- define "siembridge.fullname" -}}
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

{{- define "siembridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "siembridge.labels" -}}
helm.sh/chart: {{ include "siembridge.chart" . }}
{{ include "siembridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: siembridge
{{- end }}

{{/* Labels that select the operator pods (not the collector pods it creates). */}}
{{- define "siembridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "siembridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Name of the operator's ServiceAccount. */}}
{{- define "siembridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "siembridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Operator image reference. */}}
{{- define "siembridge.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Rules the operator needs wherever it manages siembridge resources. The collector Roles it creates
grant leases, configmaps and secrets get: Kubernetes lets a subject grant only what it holds, so
the operator holds those verbs itself.
*/}}
{{- define "siembridge.rules" -}}
- apiGroups: ["siembridge.io"]
  resources: ["logsources", "consumergroups", "siemdestinations", "notifiers"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["siembridge.io"]
  resources: ["logsources/status", "consumergroups/status", "siemdestinations/status", "notifiers/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: [""]
  resources: ["configmaps", "serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Rules of the operator in its own namespace when it watches another one: leader election and events. */}}
{{- define "siembridge.leaderElectionRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* The watched namespaces as a JSON list (sorted, without duplicates); empty: every namespace. */}}
{{- define "siembridge.watchNamespaces" -}}
{{- toJson (.Values.watchNamespaces | default list | uniq | sortAlpha) -}}
{{- end }}
