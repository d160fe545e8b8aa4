{{/* Names and labels. */}}
{{- define "fitlink.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fitlink.fullname" -}}
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

{{/* Selector labels of one role: (dict "root" $ "component" "worker"). */}}
{{- define "fitlink.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fitlink.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Every label of one role's objects: (dict "root" $ "component" "worker"). */}}
{{- define "fitlink.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "fitlink.selectorLabels" . }}
app.kubernetes.io/part-of: fitlink
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end -}}

{{- define "fitlink.secretName" -}}
{{- default (printf "%s-secrets" (include "fitlink.fullname" .)) .Values.existingSecret -}}
{{- end -}}

{{- define "fitlink.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fitlink.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "fitlink.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* "true" when the database is the SQLite file on the writer's volume. */}}
{{- define "fitlink.sqlite" -}}
{{- if eq .Values.database.backend "sqlite" -}}true{{- end -}}
{{- end -}}

{{- define "fitlink.sqliteClaim" -}}
{{- default (printf "%s-data" (include "fitlink.fullname" .)) .Values.database.sqlite.persistence.existingClaim -}}
{{- end -}}

{{/* Refuses values that cannot work; included by every role. */}}
{{- define "fitlink.validate" -}}
{{- if not (has .Values.database.backend (list "sqlite" "postgres")) -}}
{{- fail (printf "database.backend must be sqlite or postgres, not %q" .Values.database.backend) -}}
{{- end -}}
{{- $p := int .Values.broker.resultsPartitions -}}
{{- if or (lt $p 1) (gt $p 64) -}}
{{- fail "broker.resultsPartitions must be 1 to 64" -}}
{{- end -}}
{{- if not .Values.existingSecret -}}
{{- if not .Values.secrets.amqpUrl -}}
{{- fail "set existingSecret (production) or secrets.amqpUrl: the chart has no default broker credential" -}}
{{- end -}}
{{- if not (or .Values.secrets.tokenKey .Values.secrets.tokenKeys) -}}
{{- fail "set existingSecret (production) or secrets.tokenKey (the output of `fitlink keygen`)" -}}
{{- end -}}
{{- if and .Values.secrets.tokenKey .Values.secrets.tokenKeys -}}
{{- fail "secrets.tokenKey and secrets.tokenKeys are both set: set only one (tokenKeys holds the current key first, then the older ones; the roles refuse both)" -}}
{{- end -}}
{{- if and (eq .Values.database.backend "postgres") (not .Values.secrets.databaseUrl) -}}
{{- fail "database.backend is postgres: set existingSecret (with a database-url key) or secrets.databaseUrl" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.broker.tls.secretName (not .Values.existingSecret) (hasPrefix "amqp://" .Values.secrets.amqpUrl) -}}
{{- fail "broker.tls.secretName is set but secrets.amqpUrl is a plain amqp:// URL: use amqps:// (the roles refuse TLS files with a plain-text URL)" -}}
{{- end -}}
{{- if and .Values.broker.tls.clientCertificate (not .Values.broker.tls.secretName) -}}
{{- fail "broker.tls.clientCertificate needs broker.tls.secretName (the Secret with tls.crt and tls.key)" -}}
{{- end -}}
{{- if and (eq .Values.database.backend "postgres") (hasPrefix "sqlite" .Values.secrets.databaseUrl) -}}
{{- fail "secrets.databaseUrl is a SQLite URL but database.backend is postgres: set database.backend: sqlite (and database.sqlite.path)" -}}
{{- end -}}
{{- end -}}

{{/* One env var from a key of the Secret: (dict "root" $ "name" "FITLINK_X" "key" "x" "optional" true). */}}
{{- define "fitlink.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "fitlink.secretName" .root }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end -}}

{{/* Settings of every role: the broker, the ops surface, logs. */}}
{{- define "fitlink.env.common" -}}
{{ include "fitlink.secretEnv" (dict "root" . "name" "FITLINK_AMQP_URL" "key" "amqp-url") }}
- name: FITLINK_NAMESPACE
  value: {{ .Values.broker.namespace | quote }}
- name: FITLINK_RESULTS_PARTITIONS
  value: {{ .Values.broker.resultsPartitions | quote }}
- name: FITLINK_OPS_ADDR
  value: "0.0.0.0:9100"
- name: FITLINK_LOG_FORMAT
  value: json
{{- with .Values.broker.tls.secretName }}
- name: FITLINK_AMQP_CA_FILE
  value: /etc/fitlink/amqp-tls/ca.crt
{{- if $.Values.broker.tls.clientCertificate }}
- name: FITLINK_AMQP_CLIENT_CERT_FILE
  value: /etc/fitlink/amqp-tls/tls.crt
- name: FITLINK_AMQP_CLIENT_KEY_FILE
  value: /etc/fitlink/amqp-tls/tls.key
{{- end }}
{{- end }}
- name: RUST_LOG
  value: {{ .Values.logLevel | quote }}
{{- range $name, $value := .Values.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* The broker's TLS files (broker.tls.secretName), for every role: a volumeMounts entry. */}}
{{- define "fitlink.brokerTlsMount" -}}
{{- if .Values.broker.tls.secretName }}
- {name: amqp-tls, mountPath: /etc/fitlink/amqp-tls, readOnly: true}
{{- end }}
{{- end -}}

{{/* The volume of fitlink.brokerTlsMount: a volumes entry. */}}
{{- define "fitlink.brokerTlsVolume" -}}
{{- with .Values.broker.tls.secretName }}
- name: amqp-tls
  secret:
    secretName: {{ . | quote }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{/* The database, for the roles that open it (writer, dispatcher, console). */}}
{{- define "fitlink.env.database" -}}
{{- if include "fitlink.sqlite" . -}}
- name: FITLINK_DATABASE_URL
  value: {{ printf "sqlite://%s" .Values.database.sqlite.path | quote }}
{{- else -}}
{{ include "fitlink.secretEnv" (dict "root" . "name" "FITLINK_DATABASE_URL" "key" "database-url") }}
{{- end -}}
{{- end -}}

{{/* The token keys and the providers, for the roles that call them or seal tokens. One of
     token-key and token-keys is in the Secret (a role refuses both, and neither). */}}
{{- define "fitlink.env.providers" -}}
{{ include "fitlink.secretEnv" (dict "root" . "name" "FITLINK_TOKEN_KEY" "key" "token-key" "optional" true) }}
{{ include "fitlink.secretEnv" (dict "root" . "name" "FITLINK_TOKEN_KEYS" "key" "token-keys" "optional" true) }}
{{- with .Values.providers.google.clientId }}
- name: FITLINK_GOOGLE_CLIENT_ID
  value: {{ . | quote }}
{{- end }}
{{ include "fitlink.secretEnv" (dict "root" . "name" "FITLINK_GOOGLE_CLIENT_SECRET" "key" "google-client-secret" "optional" true) }}
{{- with .Values.providers.google.apiBase }}
- name: FITLINK_GOOGLE_API_BASE
  value: {{ . | quote }}
{{- end }}
{{- with .Values.providers.google.tokenUrl }}
- name: FITLINK_GOOGLE_TOKEN_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.providers.google.authorizeUrl }}
- name: FITLINK_GOOGLE_AUTHORIZE_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.providers.google.revokeUrl }}
- name: FITLINK_GOOGLE_REVOKE_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.providers.fitbit.clientId }}
- name: FITLINK_FITBIT_CLIENT_ID
  value: {{ . | quote }}
{{- end }}
{{ include "fitlink.secretEnv" (dict "root" . "name" "FITLINK_FITBIT_CLIENT_SECRET" "key" "fitbit-client-secret" "optional" true) }}
{{- end -}}

{{/* Pod metadata annotations: (dict "root" $ "role" .Values.worker). */}}
{{- define "fitlink.podAnnotations" -}}
checksum/secret: {{ include (print .root.Template.BasePath "/secret.yaml") .root | sha256sum }}
{{- if .root.Values.metrics.annotations }}
prometheus.io/scrape: "true"
prometheus.io/port: "9100"
prometheus.io/path: /metrics
{{- end }}
{{- with .role.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Pod-level settings every role shares: (dict "root" $ "role" .Values.worker). */}}
{{- define "fitlink.podSpec" -}}
serviceAccountName: {{ include "fitlink.serviceAccountName" .root }}
automountServiceAccountToken: false
terminationGracePeriodSeconds: {{ .root.Values.terminationGracePeriodSeconds }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .role.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .role.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Container settings every role shares (image, ops port, probes, security, resources). */}}
{{- define "fitlink.container" -}}
image: {{ include "fitlink.image" .root }}
imagePullPolicy: {{ .root.Values.image.pullPolicy }}
securityContext:
  {{- toYaml .root.Values.securityContext | nindent 2 }}
resources:
  {{- toYaml .role.resources | nindent 2 }}
startupProbe:
  # A writer migrates the database before it serves /livez.
  httpGet: {path: /livez, port: ops}
  periodSeconds: 10
  failureThreshold: 60
livenessProbe:
  httpGet: {path: /livez, port: ops}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: ops}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}

{{/* The ops port, first in every container's ports. */}}
{{- define "fitlink.opsPort" -}}
- name: ops
  containerPort: 9100
  protocol: TCP
{{- end -}}

{{/* The SQLite volume's pod affinity: readers of the file run on the writer's node. */}}
{{- define "fitlink.sqliteAffinity" -}}
podAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - labelSelector:
        matchLabels:
          {{- include "fitlink.selectorLabels" (dict "root" .root "component" "writer") | nindent 10 }}
      topologyKey: kubernetes.io/hostname
{{- end -}}
