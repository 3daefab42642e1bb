{{/*
The pods of both topologies (docs/operations.md, "Topologies"):
- SQLite: one StatefulSet pod with the operator and the sidecar sharing the database file.
- PostgreSQL: an operator Deployment (replicas elect a leader) and a sidecar Deployment.
*/}}

{{- define "flightdeck.sqlite" -}}
{{- if eq .Values.storage.type "sqlite" }}true{{ end }}
{{- end }}

{{- define "flightdeck.operatorReplicas" -}}
{{- if include "flightdeck.sqlite" . }}1{{ else }}{{ default 2 .Values.operator.replicas }}{{ end }}
{{- end }}

{{- define "flightdeck.sidecarReplicas" -}}
{{- if include "flightdeck.sqlite" . }}1{{ else }}{{ default 2 .Values.sidecar.replicas }}{{ end }}
{{- end }}

{{/* Pods of one component: "operator" (decides; in SQLite also the sidecar) or "sidecar". */}}
{{- define "flightdeck.componentSelector" -}}
{{ include "flightdeck.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The pods that serve the HTTP API: the operator's pod on SQLite, the sidecar's on PostgreSQL. */}}
{{- define "flightdeck.sidecarComponent" -}}
{{- if include "flightdeck.sqlite" . }}operator{{ else }}sidecar{{ end }}
{{- end }}

{{- define "flightdeck.webhookCertDir" -}}
{{- if include "flightdeck.sqlite" . }}/tmp/flightdeck-webhook{{ else }}/etc/flightdeck/webhook{{ end }}
{{- end }}

{{- define "flightdeck.webhookSecretName" -}}
{{- default (printf "%s-webhook-tls" (include "flightdeck.fullname" .)) .Values.webhook.existingSecret }}
{{- end }}

{{- define "flightdeck.podMetadata" -}}
metadata:
  labels:
    {{- include "flightdeck.componentSelector" . | nindent 4 }}
    {{- with .root.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .root.Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* Pod settings both components share: identity, security, scheduling. */}}
{{- define "flightdeck.podCommon" -}}
{{- $root := .root -}}
serviceAccountName: {{ include "flightdeck.serviceAccountName" $root }}
automountServiceAccountToken: true
terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $root.Values.affinity }}
affinity:
  {{- toYaml $root.Values.affinity | nindent 2 }}
{{- else if and (not (include "flightdeck.sqlite" $root)) (ne $root.Values.operator.podAntiAffinity "none") }}
# Replicas on different nodes, so that one node failing leaves a standby (or a sidecar) running.
affinity:
  podAntiAffinity:
    {{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "flightdeck.componentSelector" . | fromYaml)) }}
    {{- if eq $root.Values.operator.podAntiAffinity "hard" }}
    requiredDuringSchedulingIgnoredDuringExecution:
      - {{- toYaml $term | nindent 8 }}
    {{- else }}
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          {{- toYaml $term | nindent 10 }}
    {{- end }}
{{- end }}
{{- end }}

{{/* The scratch volume, and the SQLite data volume shared by the containers of the one pod. */}}
{{- define "flightdeck.scratchVolume" -}}
# The root filesystem is read-only; Python and the clients may still need scratch space.
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end }}

{{- define "flightdeck.dataVolume" -}}
{{- if include "flightdeck.sqlite" . }}
# The SQLite store (WAL mode): shared by both containers of this one pod.
- name: data
  {{- if .Values.storage.sqlite.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ default (printf "%s-data" (include "flightdeck.fullname" .)) .Values.storage.sqlite.persistence.existingClaim }}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- end }}
{{- end }}

{{- define "flightdeck.tokenVolume" -}}
{{- if and .Values.sidecar.enabled (eq .Values.sidecar.auth.mode "token") }}
- name: auth-token
  secret:
    secretName: {{ required "sidecar.auth.token.existingSecret is required when sidecar.auth.mode is token" .Values.sidecar.auth.token.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.sidecar.auth.token.key }}
        path: {{ .Values.sidecar.auth.token.key }}
{{- end }}
{{- end }}
