{{/* Chart name, overridable. */}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of the operator's resources: "<release>-operator" unless overridden. */}}
{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "sluice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sluice
{{- end -}}

{{/* Labels that select the operator pods (never change them: Deployment selectors are immutable). */}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sluice.leaseName" -}}
{{- default (include "sluice.fullname" .) .Values.operator.leaseName -}}
{{- end -}}

{{- define "sluice.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "sluice.fullname" .)) .Values.certificates.secretName -}}
{{- end -}}

{{/* The MutatingWebhookConfiguration's name: the operator patches its caBundle, and RBAC allows exactly this name. */}}
{{- define "sluice.webhookName" -}}
{{- include "sluice.fullname" . -}}
{{- end -}}

{{/* An image reference from {repository, tag, digest}, the tag defaulting to appVersion. */}}
{{- define "sluice.image" -}}
{{- $image := index . 0 -}}
{{- $root := index . 1 -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* native or plain: "auto" is native from Kubernetes 1.29, where native sidecars are on by default. */}}
{{- define "sluice.sidecarMode" -}}
{{- if eq .Values.sidecar.mode "auto" -}}
{{- if semverCompare ">=1.29.0-0" .Capabilities.KubeVersion.Version -}}native{{- else -}}plain{{- end -}}
{{- else -}}
{{- .Values.sidecar.mode -}}
{{- end -}}
{{- end -}}

{{/* Namespaces never injected: the configured ones and always the release namespace (an operator injected by itself would wait for itself). */}}
{{- define "sluice.excludedNamespaces" -}}
{{- $list := .Values.webhook.excludeNamespaces | default list -}}
{{- if not (has .Release.Namespace $list) -}}
{{- $list = append $list .Release.Namespace -}}
{{- end -}}
{{- toJson $list -}}
{{- end -}}

{{/* The names the serving certificate is valid for: the Service as pods and the API server reach it. */}}
{{- define "sluice.dnsNames" -}}
{{- $svc := include "sluice.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- toJson (list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.clusterDomain)) -}}
{{- end -}}
