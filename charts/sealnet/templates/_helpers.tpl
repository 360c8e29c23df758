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
{{- $wg := dict "listenPort" (int .Values.wireguard.listenPort) "implementation" .Values.wireguard.implementation "persistentKeepalive" (int .Values.wireguard.persistentKeepalive) "restoreLastApplied" (ne .Values.wireguard.restoreLastApplied false) }}
{{- $cfg := dict "mode" .Values.agent.mode "stateDir" (include "sealnet.stateDir" .) "store" (dict "type" "kubernetes" "removeNotReadyTaint" .Values.notReadyTaint.remove) "wireguard" $wg "resyncIntervalSeconds" (int .Values.agent.resyncIntervalSeconds) "debounceMs" (int .Values.agent.debounceMs) "logLevel" .Values.agent.logLevel "metricsAddress" (printf "%s:%d" .Values.agent.metrics.host (int .Values.agent.metrics.port)) }}
{{- $st := .Values.steering }}
{{- if and $st.enabled $st.failClosed (empty $st.clusterCidrs) }}
{{- fail "steering.clusterCidrs is required: set it to the cluster's pod range(s), e.g. --set 'steering.clusterCidrs={10.244.0.0/16}' (kube-controller-manager --cluster-cidr); without it a fail-closed agent cannot start (or set steering.failClosed=false explicitly)" }}
{{- end }}
{{- $_ := set $cfg "steering" (dict "enabled" $st.enabled "failClosed" $st.failClosed "clusterCidrs" $st.clusterCidrs "exemptCidrs" $st.exemptCidrs "interfaces" $st.interfaces "enforceIngress" $st.enforceIngress "nodeToNode" $st.nodeToNode "nodeCidrs" (include "sealnet.nodeCidrs" . | fromJsonArray)) }}
{{- $_ := set $cfg "postQuantum" (dict "mode" .Values.postQuantum.mode "renewMinutes" (int .Values.postQuantum.renewMinutes)) }}
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

{{/*
steering.nodeCidrs, checked as the agent checks them (tunnels/agent/config.ts: at least a /8 or
/7, not starting in a non-unicast range) so that a mistake fails `helm install` naming the value
instead of every agent exiting 2. It is stricter than the agent in two places: any IPv6 range
starting with :: (the first 80 bits zero; the template cannot parse IPv6 as the agent does), and
an IPv4 range that covers 169.254.0.0/16 without starting in it (169.0.0.0/8). Returns a JSON list.
*/}}
{{- define "sealnet.nodeCidrs" -}}
{{- $out := list -}}
{{- range $i, $c := .Values.steering.nodeCidrs -}}
{{- $why := "" -}}
{{- $c = lower $c -}}
{{- if regexMatch "^([0-9]{1,3}[.]){3}[0-9]{1,3}/[0-9]{1,2}$" $c -}}
{{- $parts := splitList "/" $c -}}
{{- $o := splitList "." (index $parts 0) -}}
{{- $len := atoi (index $parts 1) -}}
{{- $a := atoi (index $o 0) -}}
{{- $b := atoi (index $o 1) -}}
{{- range $o }}{{ if gt (atoi .) 255 }}{{ $why = "is not an IPv4 address" }}{{ end }}{{ end -}}
{{- if $why -}}
{{- else if or (lt $len 8) (gt $len 32) -}}{{- $why = "is wider than a /8 (or longer than /32)" -}}
{{- else if eq $a 0 -}}{{- $why = "starts in the unspecified range 0.0.0.0/8" -}}
{{- else if eq $a 127 -}}{{- $why = "starts in the loopback range 127.0.0.0/8" -}}
{{- else if and (eq $a 169) (or (eq $b 254) (le $len 16)) -}}{{- $why = "covers the link-local range 169.254.0.0/16" -}}
{{- else if ge $a 224 -}}{{- $why = "starts in a multicast or reserved range (224.0.0.0/3)" -}}
{{- end -}}
{{- else if regexMatch "^[0-9a-f:]+/[0-9]{1,3}$" $c -}}
{{- $parts := splitList "/" $c -}}
{{- $len := atoi (index $parts 1) -}}
{{- if or (lt $len 7) (gt $len 128) -}}{{- $why = "is wider than a /7 (or longer than /128)" -}}
{{- else if regexMatch "^ff[0-9a-f]{2}:" $c -}}{{- $why = "starts in the multicast range ff00::/8" -}}
{{- else if regexMatch "^fe[89ab][0-9a-f]:" $c -}}{{- $why = "starts in the link-local range fe80::/10" -}}
{{- else if or (hasPrefix "::" $c) (regexMatch "^(0{1,4}:){5}" $c) -}}{{- $why = "starts in ::/80 (unspecified, loopback, IPv4-mapped or IPv4-compatible)" -}}
{{- end -}}
{{- else -}}
{{- $why = "is not an IPv4 or IPv6 CIDR" -}}
{{- end -}}
{{- if $why -}}
{{- fail (printf "steering.nodeCidrs[%d]: %s %s; list the networks your nodes' InternalIPs are in" $i $c $why) -}}
{{- end -}}
{{- $out = append $out $c -}}
{{- end -}}
{{- toJson $out -}}
{{- end }}

{{/*
Where kubelet probes the agent: its metrics host, or loopback when it listens on every address
(0.0.0.0 / [::], as monitoring.podMonitor needs).
*/}}
{{- define "sealnet.probeHost" -}}
{{- $h := .Values.agent.metrics.host -}}
{{- if eq $h "0.0.0.0" -}}127.0.0.1{{- else if eq $h "[::]" -}}::1{{- else -}}{{ $h }}{{- end -}}
{{- end }}
