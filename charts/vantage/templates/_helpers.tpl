{{/* Chart name. */}}
{{- define "vantage.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: <release>-vantage, or the release name when it already contains the chart name. */}}
{{- define "vantage.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "vantage.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "vantage.labels" -}}
helm.sh/chart: {{ include "vantage.chart" . }}
app.kubernetes.io/name: {{ include "vantage.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vantage
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "operator"). */}}
{{- define "vantage.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vantage.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "vantage.componentLabels" -}}
{{ include "vantage.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "vantage.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Name of a component's ServiceAccount. */}}
{{- define "vantage.serviceAccount" -}}
{{- printf "%s-%s" (include "vantage.fullname" .ctx) .component -}}
{{- end -}}

{{- define "vantage.registrationHostKeySecret" -}}
{{- default (printf "%s-registration-host-key" (include "vantage.fullname" .)) .Values.registration.hostKey.secretName -}}
{{- end -}}

{{- define "vantage.controllerHostKeysSecret" -}}
{{- default (printf "%s-controller-host-keys" (include "vantage.fullname" .)) .Values.controllers.hostKeys.secretName -}}
{{- end -}}

{{- define "vantage.controllerPoolName" -}}
{{- default (include "vantage.fullname" .) .Values.controllerPool.name -}}
{{- end -}}

{{/* "true" when the operator renders the controllers and the registration server from
the default ControllerPool (the pool is on and the static controllers are off). */}}
{{- define "vantage.poolManaged" -}}
{{- if and .Values.controllerPool.enabled (not .Values.controllers.static.enabled) }}true{{ end -}}
{{- end -}}

{{/* "true" when controllers run at all: static ones, or the pool's. */}}
{{- define "vantage.controllersEnabled" -}}
{{- if or .Values.controllers.static.enabled (include "vantage.poolManaged" .) }}true{{ end -}}
{{- end -}}

{{/* Port of a URL, or the scheme's default: (dict "url" "nats://h:4222" "default" 4222). */}}
{{- define "vantage.urlPort" -}}
{{- $u := urlParse .url -}}
{{- $hostport := splitList ":" (get $u "host") -}}
{{- if gt (len $hostport) 1 -}}{{ last $hostport }}{{- else if eq (get $u "scheme") "https" -}}443{{- else if eq (get $u "scheme") "http" -}}80{{- else -}}{{ .default }}{{- end -}}
{{- end -}}

{{/* NATS_URL (and CLICKHOUSE_URL/_DB when "clickhouse" is true) environment entries.
With nats.auth.enabled the component connects as NATS user `vantage-<component>`: its
password comes from nats.auth.existingSecret (key = the component) into NATS_PASSWORD,
which Kubernetes substitutes into the URL. */}}
{{- define "vantage.backendEnv" -}}
- name: RUST_LOG
  value: {{ .ctx.Values.logLevel | quote }}
{{- $auth := .ctx.Values.nats.auth }}
{{- if $auth.enabled }}
{{- if .ctx.Values.nats.existingSecret }}
{{- fail "nats.auth.enabled builds each component's NATS URL from nats.url and its own password; unset nats.existingSecret (the URL from a Secret cannot carry per-component users)" }}
{{- end }}
- name: NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ required "nats.auth.enabled needs nats.auth.existingSecret: a Secret with one NATS password per component (keys operator, registration, controller, collector, engines, api)" $auth.existingSecret }}
      key: {{ .component }}
- name: NATS_URL
  value: {{ regexReplaceAll "(^|,)\\s*([a-z]+)://" (include "vantage.natsUrl" .ctx) (printf "${1}${2}://vantage-%s:$(NATS_PASSWORD)@" .component) | quote }}
{{- else }}
- name: NATS_URL
{{- if .ctx.Values.nats.existingSecret }}
  valueFrom:
    secretKeyRef:
      name: {{ .ctx.Values.nats.existingSecret }}
      key: {{ .ctx.Values.nats.existingSecretKey }}
{{- else }}
  value: {{ include "vantage.natsUrl" .ctx | quote }}
{{- end }}
{{- end }}
- name: NATS_REPLICAS
  value: {{ .ctx.Values.nats.replicas | int | quote }}
{{- if .clickhouse }}
- name: CLICKHOUSE_URL
{{- if .ctx.Values.clickhouse.existingSecret }}
  valueFrom:
    secretKeyRef:
      name: {{ .ctx.Values.clickhouse.existingSecret }}
      key: {{ .ctx.Values.clickhouse.existingSecretKey }}
{{- else }}
  value: {{ .ctx.Values.clickhouse.url | quote }}
{{- end }}
- name: CLICKHOUSE_DB
  value: {{ .ctx.Values.clickhouse.database | quote }}
{{- include "vantage.clickhouseClusterEnv" .ctx }}
{{- end }}
{{- end -}}

{{/* CLICKHOUSE_CLUSTER when clickhouse.cluster is set (ON CLUSTER DDL, Replicated tables
and Distributed reads and writes); nothing for a single node. Starts with a newline. */}}
{{- define "vantage.clickhouseClusterEnv" -}}
{{- with .Values.clickhouse.cluster }}
- name: CLICKHOUSE_CLUSTER
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* The NATS URL every component connects to: nats.urls comma-joined (the seed URLs of a
NATS cluster; the client connects to whichever answers), else nats.url. */}}
{{- define "vantage.natsUrl" -}}
{{- if .Values.nats.urls -}}
{{- if .Values.nats.existingSecret -}}
{{- fail "nats.urls and nats.existingSecret are both set: put the comma-separated URLs into the Secret (key nats.existingSecretKey) and leave nats.urls empty, or unset nats.existingSecret" -}}
{{- end -}}
{{- join "," .Values.nats.urls -}}
{{- else -}}
{{- .Values.nats.url -}}
{{- end -}}
{{- end -}}

{{/* The ports of every NATS URL (for the egress NetworkPolicy), comma-separated, no repeats. */}}
{{- define "vantage.natsPorts" -}}
{{- $ports := list -}}
{{- range splitList "," (include "vantage.natsUrl" .) -}}
{{- $ports = append $ports (include "vantage.urlPort" (dict "url" (trim .) "default" 4222)) -}}
{{- end -}}
{{- $ports | uniq | join "," -}}
{{- end -}}

{{/* A PodDisruptionBudget for a component with more than one replica (one replica: none,
it would block every node drain): (dict "ctx" $ "component" "api" "replicas" 2).
Starts with "---" when rendered. */}}
{{- define "vantage.pdb" -}}
{{- $pdb := .ctx.Values.podDisruptionBudget -}}
{{- if and $pdb.enabled (gt (int .replicas) 1) }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "vantage.fullname" .ctx }}-{{ .component }}
  namespace: {{ .ctx.Release.Namespace }}
  labels:
    {{- include "vantage.componentLabels" (dict "ctx" .ctx "component" .component) | nindent 4 }}
spec:
  {{- if $pdb.minAvailable }}
  minAvailable: {{ $pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $pdb.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "vantage.selectorLabels" (dict "ctx" .ctx "component" .component) | nindent 6 }}
{{- end }}
{{- end -}}

{{/* Liveness and readiness probes on /healthz of the metrics port named "metrics". */}}
{{- define "vantage.healthProbes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: metrics
  {{- toYaml .Values.probes.liveness | nindent 2 }}
readinessProbe:
  httpGet:
    path: /healthz
    port: metrics
  {{- toYaml .Values.probes.readiness | nindent 2 }}
{{- end -}}

{{/* Pod-level fields shared by every pod: (dict "ctx" $ "c" .Values.operator), with
"component" and "replicas" for the anti-affinity of components that run several pods. */}}
{{- define "vantage.podCommon" -}}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .ctx.Values.podSecurityContext | nindent 2 }}
{{- with .c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- /* the component's own affinity, plus (when it has more than one replica and sets no
podAntiAffinity itself) a preferred spread over podAntiAffinity.topologyKey */}}
{{- $aff := deepCopy (default (dict) .c.affinity) }}
{{- $anti := .ctx.Values.podAntiAffinity }}
{{- if and .component $anti.enabled (gt (int (default 1 .replicas)) 1) (not (hasKey $aff "podAntiAffinity")) }}
{{- $selector := include "vantage.selectorLabels" (dict "ctx" .ctx "component" .component) | fromYaml }}
{{- $term := dict "weight" (int $anti.weight) "podAffinityTerm" (dict "topologyKey" $anti.topologyKey "labelSelector" (dict "matchLabels" $selector)) }}
{{- $_ := set $aff "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list $term)) }}
{{- end }}
{{- with $aff }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Room for the controller spool: its limit plus a quarter for files being written. */}}
{{- define "vantage.spoolSize" -}}
{{- $mib := int .Values.controllers.spool.maxMiB -}}
{{- printf "%dMi" (add $mib (div $mib 4)) -}}
{{- end -}}

{{/* The pre-authentication flags of both SSH servers (values.sshPreAuth). */}}
{{- define "vantage.sshPreAuthArgs" -}}
{{- $a := .Values.sshPreAuth -}}
- --preauth-grace={{ $a.graceSeconds }}
- --max-startups={{ $a.maxStartups.start }}:{{ $a.maxStartups.rate }}:{{ $a.maxStartups.full }}
- --max-startups-per-source={{ $a.perSource }}
{{- end }}
