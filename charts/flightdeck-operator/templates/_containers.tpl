{{/* The two containers; both topologies run the same ones (docs/operations.md, "Topologies"). */}}

{{- define "flightdeck.operatorContainer" -}}
- name: operator
  image: {{ include "flightdeck.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - run
    - --liveness
    - http://0.0.0.0:{{ .Values.operator.healthPort }}/healthz
    {{- range .Values.watchNamespaces }}
    - --namespace
    - {{ . }}
    {{- end }}
    {{- with .Values.operator.extraArgs }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  env:
    {{- include "flightdeck.storeEnv" . | nindent 4 }}
    - name: FLIGHTDECK_DEPENDENCY_GRACE_SECONDS
      value: {{ .Values.operator.dependencyGraceSeconds | quote }}
    - name: FLIGHTDECK_POINTER_RESYNC_SECONDS
      value: {{ .Values.operator.pointerResyncSeconds | quote }}
    - name: FLIGHTDECK_MIN_CANDIDATE_RUNS
      value: {{ .Values.operator.minCandidateRuns | quote }}
    - name: FLIGHTDECK_MIN_BASELINE_RUNS
      value: {{ .Values.operator.minBaselineRuns | quote }}
    - name: FLIGHTDECK_MIN_LOW_RUNS
      value: {{ .Values.operator.minLowRuns | quote }}
    - name: FLIGHTDECK_NOTIFICATIONS_ENABLED
      value: {{ .Values.notifications.enabled | quote }}
    - name: FLIGHTDECK_NOTIFICATION_MAX_BACKOFF_SECONDS
      value: {{ .Values.notifications.maxBackoffSeconds | quote }}
    # Leader election: the Lease in the release's namespace, this pod's name in the holder identity.
    - name: FLIGHTDECK_LEADER_ELECTION
      value: {{ .Values.operator.leaderElection.enabled | quote }}
    - name: FLIGHTDECK_LEASE_NAME
      value: {{ include "flightdeck.fullname" . }}
    - name: FLIGHTDECK_LEASE_NAMESPACE
      value: {{ .Release.Namespace }}
    - name: FLIGHTDECK_LEADER_IDENTITY
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: FLIGHTDECK_LEASE_DURATION_SECONDS
      value: {{ .Values.operator.leaderElection.leaseDurationSeconds | quote }}
    - name: FLIGHTDECK_RENEW_DEADLINE_SECONDS
      value: {{ .Values.operator.leaderElection.renewDeadlineSeconds | quote }}
    - name: FLIGHTDECK_RETRY_PERIOD_SECONDS
      value: {{ .Values.operator.leaderElection.retryPeriodSeconds | quote }}
    # Retention of decided requests (the ledger keeps every decision).
    - name: FLIGHTDECK_RETENTION_ENABLED
      value: {{ .Values.retention.enabled | quote }}
    - name: FLIGHTDECK_REQUEST_TTL_SECONDS
      value: {{ .Values.retention.ttlSecondsAfterDecided | quote }}
    - name: FLIGHTDECK_RETAIN_PER_POINTER
      value: {{ .Values.retention.retainPerPointer | quote }}
    - name: FLIGHTDECK_RETAIN_MAX
      value: {{ .Values.retention.maxResident | quote }}
    - name: FLIGHTDECK_MIN_DECIDED_AGE_SECONDS
      value: {{ .Values.retention.minAgeSeconds | quote }}
    - name: FLIGHTDECK_GC_INTERVAL_SECONDS
      value: {{ .Values.retention.intervalSeconds | quote }}
    - name: FLIGHTDECK_GC_DELETES_PER_SECOND
      value: {{ .Values.retention.deletesPerSecond | quote }}
    {{- if .Values.webhook.enabled }}
    - name: FLIGHTDECK_WEBHOOK_PORT
      value: {{ .Values.webhook.port | quote }}
    # The serving certificate's names: the webhook Service as the API server resolves it.
    - name: FLIGHTDECK_WEBHOOK_HOSTS
      value: {{ include "flightdeck.webhookHosts" . | quote }}
    # SQLite (one pod): generated at start (emptyDir), a new pod patches its new CA into the
    # configuration. PostgreSQL (replicas): one certificate for all, from a Secret.
    - name: FLIGHTDECK_WEBHOOK_CERT_DIR
      value: {{ include "flightdeck.webhookCertDir" . }}
    - name: FLIGHTDECK_WEBHOOK_CONFIGURATION
      value: {{ include "flightdeck.webhookConfigurationName" . }}
    {{- if .Values.sidecar.enabled }}
    # The sidecar creates requests and approvals for the HTTP caller it authenticated.
    - name: FLIGHTDECK_WEBHOOK_DELEGATES
      value: {{ list (printf "system:serviceaccount:%s:%s" .Release.Namespace (include "flightdeck.serviceAccountName" .)) | toJson | quote }}
    {{- end }}
    {{- end }}
    {{- with .Values.operator.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: health
      containerPort: {{ .Values.operator.healthPort }}
      protocol: TCP
    {{- if .Values.webhook.enabled }}
    - name: webhook
      containerPort: {{ .Values.webhook.port }}
      protocol: TCP
    {{- end }}
  # /healthz answers while the process runs its election loop, leader or standby (/readyz says
  # which one decides; it is not the readiness probe, or a standby would never be ready).
  startupProbe:
    httpGet:
      path: /healthz
      port: health
    periodSeconds: {{ .Values.operator.startupProbe.periodSeconds }}
    failureThreshold: {{ .Values.operator.startupProbe.failureThreshold }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: health
    periodSeconds: {{ .Values.operator.livenessProbe.periodSeconds }}
    timeoutSeconds: {{ .Values.operator.livenessProbe.timeoutSeconds }}
    failureThreshold: {{ .Values.operator.livenessProbe.failureThreshold }}
  {{- if .Values.webhook.enabled }}
  # The webhook Service routes to every replica whose webhook answers (leader or standby).
  readinessProbe:
    httpGet:
      path: /healthz
      port: webhook
      scheme: HTTPS
    periodSeconds: 10
    timeoutSeconds: 5
  {{- end }}
  resources:
    {{- toYaml .Values.operator.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.containerSecurityContext | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    {{- if include "flightdeck.sqlite" . }}
    - name: data
      mountPath: /var/lib/flightdeck
    {{- else if .Values.webhook.enabled }}
    - name: webhook-tls
      mountPath: /etc/flightdeck/webhook
      readOnly: true
    {{- end }}
{{- end }}

{{- define "flightdeck.sidecarContainer" -}}
- name: sidecar
  image: {{ include "flightdeck.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - sidecar
    - --host
    - 0.0.0.0
    - --port
    - {{ .Values.sidecar.port | quote }}
    - --auth
    - {{ .Values.sidecar.auth.mode }}
    {{- with .Values.sidecar.extraArgs }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  env:
    {{- include "flightdeck.storeEnv" . | nindent 4 }}
    - name: FLIGHTDECK_NAMESPACE
      value: {{ include "flightdeck.sidecarNamespace" . }}
    - name: FLIGHTDECK_DECISION_TIMEOUT_SECONDS
      value: {{ .Values.sidecar.decisionTimeoutSeconds | quote }}
    - name: FLIGHTDECK_MIN_CANDIDATE_RUNS
      value: {{ .Values.operator.minCandidateRuns | quote }}
    - name: FLIGHTDECK_MIN_BASELINE_RUNS
      value: {{ .Values.operator.minBaselineRuns | quote }}
    - name: FLIGHTDECK_MIN_LOW_RUNS
      value: {{ .Values.operator.minLowRuns | quote }}
    {{- if eq .Values.sidecar.auth.mode "token" }}
    - name: FLIGHTDECK_TOKEN_FILE
      value: /etc/flightdeck/auth/{{ .Values.sidecar.auth.token.key }}
    {{- end }}
    {{- with .Values.sidecar.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: http
      containerPort: {{ .Values.sidecar.port }}
      protocol: TCP
  livenessProbe:
    httpGet:
      path: /healthz
      port: http
    periodSeconds: {{ .Values.sidecar.livenessProbe.periodSeconds }}
    timeoutSeconds: {{ .Values.sidecar.livenessProbe.timeoutSeconds }}
    failureThreshold: {{ .Values.sidecar.livenessProbe.failureThreshold }}
  # /readyz checks the store and the API server, so a sidecar that cannot act gets no traffic.
  readinessProbe:
    httpGet:
      path: /readyz
      port: http
    periodSeconds: {{ .Values.sidecar.readinessProbe.periodSeconds }}
    timeoutSeconds: {{ .Values.sidecar.readinessProbe.timeoutSeconds }}
    failureThreshold: {{ .Values.sidecar.readinessProbe.failureThreshold }}
  resources:
    {{- toYaml .Values.sidecar.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.containerSecurityContext | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    {{- if include "flightdeck.sqlite" . }}
    - name: data
      mountPath: /var/lib/flightdeck
    {{- end }}
    {{- if eq .Values.sidecar.auth.mode "token" }}
    - name: auth-token
      mountPath: /etc/flightdeck/auth
      readOnly: true
    {{- end }}
{{- end }}
