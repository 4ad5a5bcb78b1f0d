{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "bankNode.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource-name prefix: <release>-<chart> unless the release already carries the name. */}}
{{- define "bankNode.fullname" -}}
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

{{/* Labels shared by every object. */}}
{{- define "bankNode.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "bankNode.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: consortium
app.kubernetes.io/component: bank-node
{{- end }}

{{/* Selector labels. */}}
{{- define "bankNode.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bankNode.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Image reference: registry/repository:tag, or @digest when one is given. */}}
{{- define "bankNode.image" -}}
{{- $img := .Values.image }}
{{- $repo := $img.repository }}
{{- if $img.registry }}{{ $repo = printf "%s/%s" $img.registry $img.repository }}{{ end }}
{{- if $img.digest }}
{{- printf "%s@%s" $repo $img.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .Chart.AppVersion $img.tag) }}
{{- end }}
{{- end }}

{{/*
checkov skips, each with its reason, for the choices this chart makes on purpose.
Rendered only while the choice applies: pin a digest or pull Always and the matching
skip disappears, so checkov checks it again.
*/}}
{{- define "bankNode.checkovSkips" -}}
{{- if not .Values.image.digest }}
checkov.io/skip1: "CKV_K8S_43=No digest is known before the image is built; release pipelines set image.digest, which pins it"
{{- end }}
{{- if ne .Values.image.pullPolicy "Always" }}
checkov.io/skip2: "CKV_K8S_15=Release tags are immutable (a digest pins exactly); IfNotPresent spares a registry round trip on every restart. Set image.pullPolicy to Always for mutable tags"
{{- end }}
{{- if not .Values.metrics.livenessProbe }}
checkov.io/skip3: "CKV_K8S_8=metrics.livenessProbe is switched off for this release"
{{- end }}
{{- if not .Values.metrics.readinessProbe }}
checkov.io/skip4: "CKV_K8S_9=metrics.readinessProbe is switched off for this release"
{{- end }}
{{- end }}

{{/* Where the Secrets are mounted (one projected volume, one folder per Secret). */}}
{{- define "bankNode.secretsDir" -}}/run/secrets/bank-node{{- end }}

{{/* The CA bundle's source ("" when none): its ConfigMap or Secret name. */}}
{{- define "bankNode.caSource" -}}
{{- default .Values.caBundle.secret .Values.caBundle.configMap }}
{{- end }}

{{/* Where the CA bundle is mounted (the file is ca.crt inside it). */}}
{{- define "bankNode.caDir" -}}/run/bank-node-ca{{- end }}

{{/*
Proxy and CA environment of the node. requests honours HTTPS_PROXY / NO_PROXY and
REQUESTS_CA_BUNDLE; SSL_CERT_FILE serves OpenSSL-based tools in the image.
*/}}
{{- define "bankNode.networkEnv" -}}
{{- with .Values.proxy.httpsProxy }}
- name: HTTPS_PROXY
  value: {{ . | quote }}
{{- end }}
{{- with .Values.proxy.noProxy }}
- name: NO_PROXY
  value: {{ join "," . | quote }}
{{- end }}
{{- if include "bankNode.caSource" . }}
- name: REQUESTS_CA_BUNDLE
  value: {{ printf "%s/ca.crt" (include "bankNode.caDir" .) | quote }}
- name: SSL_CERT_FILE
  value: {{ printf "%s/ca.crt" (include "bankNode.caDir" .) | quote }}
{{- end }}
{{- end }}

{{/* The node's config.toml (flat keys, as bank_node.config.NodeConfig expects). */}}
{{- define "bankNode.configToml" -}}
{{- $s := .Values.secrets }}
{{- $dir := include "bankNode.secretsDir" . -}}
# Rendered by the bank-node Helm chart; edit values.yaml, not this file.
portal_url = {{ .Values.portal.url | toJson }}
bank = {{ .Values.bank.id | toJson }}
credential_file = {{ printf "%s/api/%s" $dir $s.apiCredential.key | toJson }}
signing_key_file = {{ printf "%s/signing/%s" $dir $s.signingKey.key | toJson }}
secret_context_file = {{ printf "%s/ckks/%s" $dir $s.ckksContext.key | toJson }}
ckks_params_file = {{ printf "%s/ckks/%s" $dir $s.ckksContext.paramsKey | toJson }}
data_file = {{ printf "%s/%s" .Values.data.mountPath .Values.data.file | toJson }}
state_dir = {{ printf "%s/%s" .Values.data.mountPath .Values.data.stateDir | toJson }}
poll_interval_seconds = {{ .Values.config.pollIntervalSeconds }}
request_timeout_seconds = {{ .Values.config.requestTimeoutSeconds }}
max_retries = {{ .Values.config.maxRetries }}
torch_threads = {{ .Values.config.torchThreads }}
encrypt_workers = {{ .Values.config.encryptWorkers }}
metrics_port = {{ .Values.metrics.port }}
report_metrics = {{ .Values.config.reportMetrics }}
promotion_tolerance = {{ .Values.config.promotionTolerance }}
report_served_model = {{ .Values.config.reportServedModel }}
{{- if $s.genesis.existingSecret }}
genesis_file = {{ printf "%s/genesis/%s" $dir $s.genesis.key | toJson }}
{{- end }}
{{- with $s.clientCertificate }}
{{- if .existingSecret }}
tls_client_cert_file = {{ printf "%s/tls/%s" $dir .certKey | toJson }}
tls_client_key_file = {{ printf "%s/tls/%s" $dir .keyKey | toJson }}
{{- end }}
{{- end }}
{{- if .Values.config.allowUnpinnedRoster }}
allow_unpinned_roster = true
{{- end }}
{{- with .Values.config.extraToml }}
{{ . }}
{{- end }}
{{- with .Values.config.guardrails }}

[guardrails]
min_cohort = {{ .minCohort }}
dp_required = {{ .dpRequired }}
{{- if not (kindIs "invalid" .epsilonCeiling) }}
epsilon_ceiling = {{ .epsilonCeiling }}
{{- end }}
{{- if not (kindIs "invalid" .maxRoundsPerDay) }}
max_rounds_per_day = {{ int .maxRoundsPerDay }}
{{- end }}
{{- if not (kindIs "invalid" .maxModelParameters) }}
max_model_parameters = {{ int .maxModelParameters }}
{{- end }}
accepted_key_epochs = {{ .acceptedKeyEpochs | toJson }}
{{- end }}
{{- if .Values.trainWorkers.enabled }}

{{ include "bankNode.trainingToml" . }}
{{- end }}
{{- end }}

{{/* The scoring service (bank-node serve): its own name, so no selector of the node's
matches its pods (and the node's NetworkPolicy and Service stay the node's). */}}
{{- define "bankNode.serveName" -}}
{{- printf "%s-serve" (include "bankNode.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of the scoring service's pods. */}}
{{- define "bankNode.serveSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-serve" (include "bankNode.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object of the scoring service. */}}
{{- define "bankNode.serveLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "bankNode.serveSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: consortium
app.kubernetes.io/component: serve
{{- end }}

{{/* Where the scoring service's token Secret is mounted. */}}
{{- define "bankNode.serveTokenDir" -}}/run/secrets/bank-node-serve{{- end }}

{{/* The scoring service's config.toml: the node's, plus its [serve] table. */}}
{{- define "bankNode.serveConfigToml" -}}
{{ include "bankNode.configToml" . }}

[serve]
host = "0.0.0.0"
port = {{ .Values.serve.port }}
max_batch = {{ .Values.serve.maxBatch }}
token_file = {{ printf "%s/%s" (include "bankNode.serveTokenDir" .) .Values.serve.token.key | toJson }}
{{- with .Values.serve.modelDir }}
model_dir = {{ printf "%s/%s" $.Values.data.mountPath . | toJson }}
{{- end }}
{{- end }}

{{/* The training workers (bank-node train-worker, trainWorkers.enabled): their own name,
so no selector of the node's matches their pods. */}}
{{- define "bankNode.trainName" -}}
{{- printf "%s-train-worker" (include "bankNode.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of the training workers' pods. */}}
{{- define "bankNode.trainSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-train-worker" (include "bankNode.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object of the training workers. */}}
{{- define "bankNode.trainLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "bankNode.trainSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: consortium
app.kubernetes.io/component: train-worker
{{- end }}

{{/* The node's rendezvous address for the workers (MASTER_ADDR): a headless Service. */}}
{{- define "bankNode.rendezvousName" -}}
{{- printf "%s-rendezvous" (include "bankNode.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The node's [training] table when the workers are on: NODE_RANK 0 of replicas + 1. */}}
{{- define "bankNode.trainingToml" -}}
{{- with .Values.trainWorkers }}
[training]
data = "stream"
strategy = "ddp_spawn"
accelerator = {{ .accelerator | toJson }}
devices = {{ int .devices }}
num_nodes = {{ add1 (int .replicas) }}
work_dir = {{ printf "%s/train-work" .mountPath | toJson }}
session_dir = {{ printf "%s/sessions" .mountPath | toJson }}
join_timeout_seconds = {{ .joinTimeoutSeconds }}
{{- end }}
{{- end }}
