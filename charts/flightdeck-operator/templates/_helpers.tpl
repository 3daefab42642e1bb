{{/* Names, labels and shared fragments of the FlightDeck Operator chart. */}}

{{- define "flightdeck.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flightdeck.fullname" -}}
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

{{/* Cluster-scoped objects carry the namespace too: one chart per namespace (sharding) must not collide. */}}
{{- define "flightdeck.clusterName" -}}
{{- printf "%s-%s" (include "flightdeck.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flightdeck.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flightdeck.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "flightdeck.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "flightdeck.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: flightdeck
{{- end }}

{{- define "flightdeck.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "flightdeck.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "flightdeck.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The namespace the sidecar's HTTP API acts in. */}}
{{- define "flightdeck.sidecarNamespace" -}}
{{- default .Release.Namespace .Values.sidecar.namespace }}
{{- end }}

{{- define "flightdeck.sqlitePath" -}}
/var/lib/flightdeck/flightdeck.db
{{- end }}

{{/* FLIGHTDECK_STORE for both containers: a file on the data volume, or a URL from a Secret. */}}
{{- define "flightdeck.storeEnv" -}}
- name: FLIGHTDECK_STORE
{{- if eq .Values.storage.type "postgresql" }}
  valueFrom:
    secretKeyRef:
      name: {{ required "storage.postgresql.existingSecret is required when storage.type is postgresql" .Values.storage.postgresql.existingSecret }}
      key: {{ .Values.storage.postgresql.key }}
{{- else }}
  value: {{ include "flightdeck.sqlitePath" . }}
{{- end }}
{{- end }}

{{/* What the operator may do on the FlightDeck kinds, cluster-wide or in each watched namespace. */}}
{{- define "flightdeck.operatorRules" -}}
# Application: the operator watches and indexes every FlightDeck kind (through kopf); the sidecar
# reads the same objects and watches the PromotionRequests it creates until they are decided.
- apiGroups: [flightdeck.dev]
  resources:
    - agentreleases
    - pricingtables
    - promotionpolicies
    - releasepointers
    - promotionrequests
    - promotionapprovals
    - notificationsubscriptions
  verbs: [get, list, watch]
# Framework: kopf records the last handled spec in an annotation of the kinds with create and
# update handlers. Pointers and requests are handled from raw watch events: never written (only
# their status), and no kind gets a finalizer.
- apiGroups: [flightdeck.dev]
  resources: [agentreleases, pricingtables, promotionpolicies]
  verbs: [patch]
# Application: the operator writes every status: decisions, approval verdicts and conditions
# (patch), the pointer's projection with a resourceVersion precondition (update).
- apiGroups: [flightdeck.dev]
  resources:
    - agentreleases/status
    - pricingtables/status
    - promotionpolicies/status
    - releasepointers/status
    - promotionrequests/status
    - promotionapprovals/status
    - notificationsubscriptions/status
  verbs: [update, patch]
{{- if .Values.retention.enabled }}
# Application: retention deletes decided PromotionRequests once due (their decisions stay in the
# ledger), each with a UID and resourceVersion precondition.
- apiGroups: [flightdeck.dev]
  resources: [promotionrequests]
  verbs: [delete]
{{- end }}
{{- if .Values.notifications.enabled }}
# Application (operator): the HMAC key of a NotificationSubscription, read by the name its
# secretRef gives. get only: the operator never lists or watches Secrets, so it cannot discover
# any it is not pointed at (RBAC cannot narrow get to the referenced names).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- end }}
# Framework: kopf posts an Event when a handler fails. Application: the operator posts an Event
# per decision and per pointer move or repair (kubectl describe shows them).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# Application (operator): continuous verification creates PromotionRequests of its own, an
# automatic rollback of a release that failed its checks and the promotion of a release that soaked
# on the pointer another follows (docs/verification.md). create only: never updated.
- apiGroups: [flightdeck.dev]
  resources: [promotionrequests]
  verbs: [create]
{{- end }}

{{/* The admission webhook: its configuration (cluster-scoped, so per namespace too) and Service. */}}
{{- define "flightdeck.webhookConfigurationName" -}}
{{- include "flightdeck.clusterName" . }}
{{- end }}

{{- define "flightdeck.webhookServiceName" -}}
{{- printf "%s-webhook" (include "flightdeck.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The names the API server may use for the webhook Service: the serving certificate's SANs (JSON). */}}
{{- define "flightdeck.webhookHosts" -}}
{{- $service := include "flightdeck.webhookServiceName" . }}
{{- list $service (printf "%s.%s" $service .Release.Namespace) (printf "%s.%s.svc" $service .Release.Namespace) (printf "%s.%s.svc.cluster.local" $service .Release.Namespace) | toJson }}
{{- end }}
