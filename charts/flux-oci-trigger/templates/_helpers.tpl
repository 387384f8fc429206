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
{{- include "fot.objectLabels" (dict "root" . "labels" dict) -}}
{{- end -}}

{{/*
An object's labels: the chart's own, then the object's ("labels", e.g. serviceMonitor.labels
or app.kubernetes.io/component), then commonLabels; the first to set a key wins. Called with
(dict "root" $ "labels" <map>) and, for the Namespace (no app name), "namespace" true.
*/}}
{{- define "fot.objectLabels" -}}
{{- $root := .root -}}
{{- $own := include "fot.chartLabels" $root | fromYaml -}}
{{- $_ := set $own "app.kubernetes.io/part-of" "flux-oci-trigger" -}}
{{- if not .namespace -}}
{{- $_ := set $own "app.kubernetes.io/name" (include "fot.name" $root) -}}
{{- end -}}
{{- toYaml (merge $own (.labels | default dict) ($root.Values.commonLabels | default dict)) -}}
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

{{/*
registry/repository:tag as kube-state-metrics builds it (global.imageRegistry first, then
image.registry); a digest replaces the tag. With no registry, repository is the whole name.
*/}}
{{- define "fot.image" -}}
{{- $registry := dig "imageRegistry" "" (.Values.global | default dict) | default .Values.image.registry -}}
{{- $name := .Values.image.repository -}}
{{- with $registry -}}
{{- $first := first (splitList "/" $name) -}}
{{- if and (contains "/" $name) (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) -}}
{{- fail (printf "image.repository %q starts with a registry host while the registry is %q: put the host in image.registry (or set image.registry to \"\" to use image.repository as the whole name)" $name .) -}}
{{- end -}}
{{- $name = printf "%s/%s" . $name -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $name .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $name (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* global.imagePullSecrets then imagePullSecrets, names or {name: ...} maps (as
kube-state-metrics takes them), as a list of LocalObjectReferences. */}}
{{- define "fot.imagePullSecrets" -}}
{{- $secrets := list -}}
{{- range concat (dig "imagePullSecrets" list (.Values.global | default dict)) .Values.imagePullSecrets -}}
{{- $secrets = append $secrets (kindIs "string" . | ternary (dict "name" .) .) -}}
{{- end -}}
{{- with $secrets -}}
{{- toYaml . -}}
{{- end -}}
{{- end -}}

{{/* A Prometheus duration (1h30m, 500ms) in milliseconds. */}}
{{- define "fot.durationMs" -}}
{{- $ms := dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000 "w" 604800000 "y" 31536000000 -}}
{{- $total := 0 -}}
{{- range regexFindAll "[0-9]+(ms|[ywdhms])" . -1 -}}
{{- $unit := regexFind "(ms|[ywdhms])$" . -}}
{{- $total = add $total (mul (trimSuffix $unit . | int64) (get $ms $unit)) -}}
{{- end -}}
{{- $total -}}
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
