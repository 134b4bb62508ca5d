{{/*
The chart's name (`karo` unless nameOverride).
*/}}
{{- define "karo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of the release's objects. Deliberately not prefixed with the release name:
the Service is `karo.<namespace>.svc` for `helm install my-operator ...`, as the
README's Alertmanager and curl examples expect. fullnameOverride for a second Karo
in one namespace.
*/}}
{{- define "karo.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- include "karo.name" . }}
{{- end }}
{{- end }}

{{/*
Name of cluster-scoped objects (ClusterRole, ClusterRoleBinding): qualified with the
namespace, so releases in two namespaces do not collide.
*/}}
{{- define "karo.clusterName" -}}
{{- printf "%s-%s" (include "karo.fullname" .) .Release.Namespace }}
{{- end }}

{{- define "karo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "karo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "karo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "karo.labels" -}}
helm.sh/chart: {{ include "karo.chart" . }}
{{ include "karo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: karo
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "karo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "karo.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "karo.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Whether the HTTPS webhook listener runs. */}}
{{- define "karo.tlsEnabled" -}}
{{- if and .Values.webhook.enabled .Values.webhook.tls.enabled }}true{{ end }}
{{- end }}

{{/* The kubernetes.io/tls Secret mounted for the HTTPS listener. */}}
{{- define "karo.tlsSecretName" -}}
{{- default (printf "%s-webhook-tls" (include "karo.fullname" .)) .Values.webhook.tls.secretName }}
{{- end }}

{{/* The Secret holding the webhook credentials, or nothing when auth is off. */}}
{{- define "karo.authSecretName" -}}
{{- if ne .Values.webhook.auth.type "none" }}
{{- default (printf "%s-webhook-auth" (include "karo.fullname" .)) .Values.webhook.auth.existingSecret }}
{{- end }}
{{- end }}

{{/* Where the pod mounts its files. */}}
{{- define "karo.configDir" -}}/etc/karo/config{{- end }}
{{- define "karo.tlsDir" -}}/etc/karo/tls{{- end }}
{{- define "karo.authDir" -}}/etc/karo/auth{{- end }}
{{- define "karo.alertmanagerAuthDir" -}}/etc/karo/alertmanager-auth{{- end }}
{{- define "karo.alertmanagerTlsDir" -}}/etc/karo/alertmanager-tls{{- end }}

{{/* `config.alertmanager.auth.type`, `none` when unset. */}}
{{- define "karo.alertmanagerAuthType" -}}
{{- $am := default dict .Values.config.alertmanager }}
{{- (default dict $am.auth).type | default "none" }}
{{- end }}

{{/*
Checks of combinations the schema cannot express well; a clear message beats a
Karo that crash-loops.
*/}}
{{- define "karo.validate" -}}
{{- $auth := .Values.webhook.auth }}
{{- if eq $auth.type "basic" }}
{{- if not $auth.username }}
{{- fail "webhook.auth.type is basic: set webhook.auth.username" }}
{{- end }}
{{- if and (not $auth.existingSecret) (not $auth.password) }}
{{- fail "webhook.auth.type is basic: set webhook.auth.password or webhook.auth.existingSecret" }}
{{- end }}
{{- end }}
{{- if eq $auth.type "bearer" }}
{{- if and (not $auth.existingSecret) (not $auth.token) }}
{{- fail "webhook.auth.type is bearer: set webhook.auth.token or webhook.auth.existingSecret" }}
{{- end }}
{{- end }}
{{- $amAuth := default dict (default dict .Values.config.alertmanager).auth }}
{{- $amType := include "karo.alertmanagerAuthType" . }}
{{- $amSecret := .Values.alertmanager.auth.existingSecret }}
{{- if and (eq $amType "basic") (not $amAuth.username) }}
{{- fail "config.alertmanager.auth.type is basic: set config.alertmanager.auth.username" }}
{{- end }}
{{- if and (eq $amType "basic") (not $amSecret) (not $amAuth.passwordFile) }}
{{- fail "config.alertmanager.auth.type is basic: set alertmanager.auth.existingSecret (the Secret holding the password)" }}
{{- end }}
{{- if and (eq $amType "bearer") (not $amSecret) (not $amAuth.tokenFile) }}
{{- fail "config.alertmanager.auth.type is bearer: set alertmanager.auth.existingSecret (the Secret holding the token)" }}
{{- end }}
{{- if and $amSecret (eq $amType "none") }}
{{- fail "alertmanager.auth.existingSecret is set: set config.alertmanager.auth.type to basic or bearer" }}
{{- end }}
{{- if and (include "karo.tlsEnabled" .) (eq (int .Values.webhook.port) (int .Values.service.targetPort)) }}
{{- fail "webhook.port and service.targetPort must differ: Karo serves HTTPS on one and HTTP on the other" }}
{{- end }}
{{- end }}

{{/*
Karo's config file: `config` with the keys the chart's objects depend on set from
the chart's values (see the comment on `config` in values.yaml).
*/}}
{{- define "karo.config" -}}
{{- $config := deepCopy .Values.config }}
{{- $webhook := deepCopy (default dict $config.webhook) }}
{{- $tls := dict "enabled" false }}
{{- if include "karo.tlsEnabled" . }}
{{- $tls = dict "enabled" true "certFile" (printf "%s/tls.crt" (include "karo.tlsDir" .)) "keyFile" (printf "%s/tls.key" (include "karo.tlsDir" .)) }}
{{- end }}
{{- $auth := dict "type" .Values.webhook.auth.type }}
{{- if eq .Values.webhook.auth.type "basic" }}
{{- $_ := set $auth "username" .Values.webhook.auth.username }}
{{- $_ := set $auth "passwordFile" (printf "%s/password" (include "karo.authDir" .)) }}
{{- else if eq .Values.webhook.auth.type "bearer" }}
{{- $_ := set $auth "tokenFile" (printf "%s/token" (include "karo.authDir" .)) }}
{{- end }}
{{- $_ := set $webhook "path" .Values.webhook.path }}
{{- $_ := set $webhook "port" (int .Values.webhook.port) }}
{{- $_ := set $webhook "tls" $tls }}
{{- $_ := set $webhook "auth" $auth }}
{{- $_ := set $config "webhook" $webhook }}
{{- $http := deepCopy (default dict $config.http) }}
{{- $_ := set $http "port" (int .Values.service.targetPort) }}
{{- $_ := set $config "http" $http }}
{{- $_ := set $config "jobTemplateFile" (printf "%s/job.yaml" (include "karo.configDir" .)) }}
{{- $_ := set $config "leaderElection" (include "karo.leaderElection" . | fromYaml) }}
{{- $_ := set $config "alertmanager" (include "karo.alertmanager" . | fromYaml) }}
{{- toYaml $config }}
{{- end }}

{{/*
`config.alertmanager` with the files of the Secrets the pod mounts
(`alertmanager.auth.existingSecret`, `alertmanager.tls.caSecret`), and without the
empty strings that stand for "not set" in values.yaml (Karo would read `url: ""` as a
URL).
*/}}
{{- define "karo.alertmanager" -}}
{{- $am := deepCopy (default dict .Values.config.alertmanager) }}
{{- $auth := deepCopy (default dict $am.auth) }}
{{- $tls := deepCopy (default dict $am.tls) }}
{{- $type := include "karo.alertmanagerAuthType" . }}
{{- if .Values.alertmanager.auth.existingSecret }}
{{- if eq $type "basic" }}
{{- $_ := set $auth "passwordFile" (printf "%s/password" (include "karo.alertmanagerAuthDir" .)) }}
{{- else if eq $type "bearer" }}
{{- $_ := set $auth "tokenFile" (printf "%s/token" (include "karo.alertmanagerAuthDir" .)) }}
{{- end }}
{{- end }}
{{- if .Values.alertmanager.tls.caSecret }}
{{- $_ := set $tls "caFile" (printf "%s/ca.crt" (include "karo.alertmanagerTlsDir" .)) }}
{{- end }}
{{- range $key := list "username" "passwordFile" "tokenFile" }}
{{- if not (get $auth $key) }}
{{- $_ := unset $auth $key }}
{{- end }}
{{- end }}
{{- if not $tls.caFile }}
{{- $_ := unset $tls "caFile" }}
{{- end }}
{{- if not $am.url }}
{{- $_ := unset $am "url" }}
{{- end }}
{{- $_ := set $am "auth" $auth }}
{{- $_ := set $am "tls" $tls }}
{{- toYaml $am }}
{{- end }}

{{/*
`config.leaderElection` with the Lease named after the release's objects (unless
`config.leaderElection.leaseName` names one), so two Karos in one namespace
(`fullnameOverride`) do not share a Lease. The namespace is left to Karo (the pod's,
POD_NAMESPACE) unless set.
*/}}
{{- define "karo.leaderElection" -}}
{{- $election := deepCopy (default dict .Values.config.leaderElection) }}
{{- if not $election.leaseName }}
{{- $_ := set $election "leaseName" (include "karo.fullname" .) }}
{{- end }}
{{- if not $election.namespace }}
{{- $_ := unset $election "namespace" }}
{{- end }}
{{- toYaml $election }}
{{- end }}

{{/* The namespace of Karo's Lease: where the leader-election Role goes. */}}
{{- define "karo.leaseNamespace" -}}
{{- (include "karo.leaderElection" . | fromYaml).namespace | default .Release.Namespace }}
{{- end }}

{{/*
The settings Karo cannot change without a restart (listen ports, TLS on/off, watched
namespaces, leader election). Their checksum on the pod template rolls the pods when
they change; the rest of the config is reloaded live, so it is left out.
*/}}
{{- define "karo.restartChecksum" -}}
{{- $settings := dict "httpPort" (int .Values.service.targetPort) "webhookPort" (int .Values.webhook.port) "tls" (include "karo.tlsEnabled" .) "namespaces" (.Values.config.namespaces | default list) "leaderElection" (include "karo.leaderElection" . | fromYaml) }}
{{- toJson $settings | sha256sum }}
{{- end }}

{{/*
What Karo does with the API server in the namespaces it watches, and nothing more:
- AlertReactions: watches them and writes their status (read-modify-write of the
  counters, merge patch of the Ready condition);
- AlertReactionRuns: creates one per alert occurrence (the exactly-once point),
  follows it (watch), records its outcome in its status, and deletes finished Runs
  past their retention;
- Jobs: creates them (owned by their Run), watches them to completion, and deletes
  the active Jobs of a cancelled Run;
- Pods: reads a failed Job's pods and the tail of their log for the Run's record.
  Never creates, deletes or execs into pods;
- Events: records them (events.k8s.io, and core Events for older tooling).
Owner references are set without blockOwnerDeletion, so no finalizers permission is
needed. No Secrets, no ConfigMaps.
*/}}
{{- define "karo.rbacRules" -}}
- apiGroups: ["karo.io"]
  resources: ["alertreactions"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["karo.io"]
  resources: ["alertreactions/status"]
  verbs: ["get", "update", "patch"]
- apiGroups: ["karo.io"]
  resources: ["alertreactionruns"]
  verbs: ["create", "get", "list", "watch", "patch", "update", "delete"]
- apiGroups: ["karo.io"]
  resources: ["alertreactionruns/status"]
  verbs: ["update", "patch"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "get", "list", "watch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Leader election (one replica follows Runs to their outcome): Karo's own Lease, in its
own namespace. Creating a Lease cannot be limited to a name; reading and renewing it
can, so Karo cannot take over other Leases of a shared namespace.
*/}}
{{- define "karo.leaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  resourceNames: [{{ (include "karo.leaderElection" . | fromYaml).leaseName | quote }}]
  verbs: ["get", "update", "patch"]
{{- end }}

{{/* Name of the leader-election Role and RoleBinding. */}}
{{- define "karo.leaseRoleName" -}}
{{- printf "%s-leader-election" (include "karo.fullname" .) }}
{{- end }}
