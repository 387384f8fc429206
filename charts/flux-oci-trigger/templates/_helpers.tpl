{{/* The app name: the value of app.kubernetes.io/name and the default base of names. */}}
{{- define "fot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The base name of every object: the release name when it contains the app name. */}}
{{- define "fot.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "fot.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels the chart itself adds for Helm's bookkeeping: nothing selects by them. */}}
{{- define "fot.chartLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
{{- end -}}

{{/* The labels every object carries (the kustomize layouts' plus Helm's bookkeeping). */}}
{{- define "fot.labels" -}}
app.kubernetes.io/name: {{ include "fot.name" . }}
app.kubernetes.io/part-of: flux-oci-trigger
{{ include "fot.chartLabels" . }}
{{- end -}}

{{- define "fot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fot.name" . }}
{{- end -}}

{{- define "fot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fot.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "fot.eventsSecretName" -}}
{{- default (printf "%s-events" (include "fot.fullname" .)) .Values.events.secret.name -}}
{{- end -}}

{{- define "fot.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/*
The rules of the ClusterRole, and of each Role when watchNamespaces is set. Least privilege:
- Flux sources: read the three kinds; patch (reconcile.fluxcd.io/requestedAt) only the two
  that are ever triggered. An OCI HelmRepository is static since Flux 2.2: never patched.
- Secrets and ServiceAccounts: `get` only, by name, for the secretRef, certSecretRef and
  imagePullSecrets an opted-in object names in its own namespace; never list or watch.
- Events: created on the triggered object (core and events.k8s.io APIs).
- Events (events.k8s.io): list and watch the OCIArtifactPushed notifications CI jobs create
  with `flux-oci-trigger notify` (the channel needs nothing inbound).
*/}}
{{- define "fot.rules" -}}
- apiGroups: ["source.toolkit.fluxcd.io"]
  resources: ["ocirepositories", "helmrepositories", "helmcharts"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["source.toolkit.fluxcd.io"]
  resources: ["ocirepositories", "helmcharts"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets", "serviceaccounts"]
  verbs: ["get"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["list", "watch"]
{{- if .Values.objectLevelWorkloadIdentity }}
- apiGroups: [""]
  resources: ["serviceaccounts/token"]
  verbs: ["create"]
{{- end }}
{{- end -}}
