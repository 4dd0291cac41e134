{{/*
The chart name, or nameOverride.
*/}}
{{- define "pipectl.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name prefix of every resource: fullnameOverride, else the release
name when it already contains the chart name, else <release>-<chart>.
Truncated to 63 characters (the DNS label limit).
*/}}
{{- define "pipectl.fullname" -}}
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

{{/*
<chart>-<version>, the helm.sh/chart label.
*/}}
{{- define "pipectl.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource. app.kubernetes.io/managed-by is Helm here; the
worker Jobs the controller creates carry managed-by=pipectl instead, and the
controller only watches those.
*/}}
{{- define "pipectl.labels" -}}
helm.sh/chart: {{ include "pipectl.chart" . }}
{{ include "pipectl.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: pipectl
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels (add app.kubernetes.io/component per workload).
*/}}
{{- define "pipectl.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pipectl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the controller's ServiceAccount.
*/}}
{{- define "pipectl.controller.serviceAccountName" -}}
{{- if .Values.controller.serviceAccount.create }}
{{- default (printf "%s-controller" (include "pipectl.fullname" .)) .Values.controller.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.controller.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the worker pods' ServiceAccount.
*/}}
{{- define "pipectl.worker.serviceAccountName" -}}
{{- if .Values.worker.serviceAccount.create }}
{{- default (printf "%s-worker" (include "pipectl.fullname" .)) .Values.worker.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.worker.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the ConfigMap holding the non-secret settings.
*/}}
{{- define "pipectl.configMapName" -}}
{{- printf "%s-config" (include "pipectl.fullname" .) }}
{{- end }}

{{/*
Name of the leader-election Lease.
*/}}
{{- define "pipectl.leaseName" -}}
{{- default (printf "%s-controller" (include "pipectl.fullname" .)) .Values.controller.leaderElection.leaseName }}
{{- end }}

{{/*
An image reference: (dict "image" .Values.x.image "root" $).
The tag defaults to the chart appVersion.
*/}}
{{- define "pipectl.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag | toString) }}
{{- end }}

{{/*
The store URL, failing the rendering when it is missing.
*/}}
{{- define "pipectl.storeUrl" -}}
{{- required "store.url is required: the S3 store, e.g. --set store.url=s3://bucket/prefix" .Values.store.url }}
{{- end }}

{{/*
envFrom of every pipectl container: the settings ConfigMap and the store
credentials Secret (when one is named).
*/}}
{{- define "pipectl.envFrom" -}}
- configMapRef:
    name: {{ include "pipectl.configMapName" . }}
{{- with .Values.store.existingSecret }}
- secretRef:
    name: {{ . }}
{{- end }}
{{- end }}
