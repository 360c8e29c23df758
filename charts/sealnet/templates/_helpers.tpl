{{/* Chart name, truncated for label values. */}}
{{- define "sealnet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, or release-chart when the release name does not contain the chart name. */}}
{{- define "sealnet.fullname" -}}
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

{{- define "sealnet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sealnet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sealnet.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sealnet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sealnet
{{- end }}

{{- define "sealnet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sealnet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The username the API server gives the agent's service-account tokens. */}}
{{- define "sealnet.agentUsername" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "sealnet.serviceAccountName" . }}
{{- end }}

{{- define "sealnet.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The agent's JSON config (tunnels/agent/config.ts validates it strictly: only known fields). */}}
{{- define "sealnet.agentConfig" -}}
{{- $wg := dict "listenPort" (int .Values.wireguard.listenPort) "implementation" .Values.wireguard.implementation "persistentKeepalive" (int .Values.wireguard.persistentKeepalive) }}
{{- $cfg := dict "mode" .Values.agent.mode "stateDir" (include "sealnet.stateDir" .) "store" (dict "type" "kubernetes") "wireguard" $wg "resyncIntervalSeconds" (int .Values.agent.resyncIntervalSeconds) "debounceMs" (int .Values.agent.debounceMs) "logLevel" .Values.agent.logLevel "metricsAddress" (printf "%s:%d" .Values.agent.metrics.host (int .Values.agent.metrics.port)) }}
{{- $st := .Values.steering }}
{{- if and $st.enabled $st.failClosed (empty $st.clusterCidrs) }}
{{- fail "steering.clusterCidrs is required: set it to the cluster's pod range(s), e.g. --set 'steering.clusterCidrs={10.244.0.0/16}' (kube-controller-manager --cluster-cidr); without it a fail-closed agent cannot start (or set steering.failClosed=false explicitly)" }}
{{- end }}
{{- $_ := set $cfg "steering" (dict "enabled" $st.enabled "failClosed" $st.failClosed "clusterCidrs" $st.clusterCidrs "exemptCidrs" $st.exemptCidrs "interfaces" $st.interfaces "enforceIngress" $st.enforceIngress "nodeToNode" $st.nodeToNode) }}
{{- if .Values.agent.underlayMtu }}
{{- $_ := set $cfg "underlayMtu" (int .Values.agent.underlayMtu) }}
{{- end }}
{{- if .Values.status.podProxy.enabled }}
{{- $_ := set $cfg "status" (dict "tokenFile" "/etc/sealnet-status/token" "listenPort" (int .Values.status.podProxy.port)) }}
{{- end }}
{{- toPrettyJson $cfg }}
{{- end }}

{{/*
The state directory (the node's private keys; a hostPath, and what cleanup.purgeState deletes).
Only /var/lib/sealnet or a directory below it: stateDir=/var with purgeState would have deleted
the host's /var. values.schema.json says the same; this check holds when
schema validation is skipped (helm --skip-schema-validation).
*/}}
{{- define "sealnet.stateDir" -}}
{{- $dir := .Values.agent.stateDir -}}
{{- if not (regexMatch "^/var/lib/sealnet(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$" $dir) -}}
{{- fail (printf "agent.stateDir must be /var/lib/sealnet or a directory below it (no . or .. components, no trailing /), got %q" $dir) -}}
{{- end -}}
{{- $dir -}}
{{- end }}
