{{/*
A Deployment of the web tier: gunicorn serving consortium.wsgi. Called with a dict:
root (the chart's context), component ("web", or "uploads" for the pool the Ingress sends
the bulk transfers to) and values (that component's values: replicaCount, workers,
timeoutSeconds, resources, podAnnotations, nodeSelector, tolerations, affinity, and
optionally niceness). Both pools run the same image, settings, volumes and probes.
*/}}
{{- define "portal.webDeployment" -}}
{{- $r := .root }}
{{- $c := .component }}
{{- $v := .values }}
{{- with $r }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "portal.fullname" . }}-{{ $c }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "portal.labels" . | nindent 4 }}
    app.kubernetes.io/component: {{ $c }}
  {{- with include "portal.checkovSkips" . | trim }}
  annotations:
    {{- . | nindent 4 }}
  {{- end }}
spec:
  replicas: {{ $v.replicaCount }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "portal.selectorLabels" . | nindent 6 }}
      app.kubernetes.io/component: {{ $c }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  template:
    metadata:
      labels:
        {{- include "portal.labels" . | nindent 8 }}
        app.kubernetes.io/component: {{ $c }}
      annotations:
        # Roll the pods when the settings change (envFrom is read at start only).
        checksum/settings: {{ include "portal.settings" . | sha256sum }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- with .Values.serviceAccountName }}
      serviceAccountName: {{ . }}
      {{- end }}
      automountServiceAccountToken: false
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . }}
        {{- end }}
      {{- end }}
      securityContext:
        {{- include "portal.podSecurityContext" . | nindent 8 }}
      {{- with include "portal.initContainers" . }}
      {{- . | nindent 6 }}
      {{- end }}
      containers:
        - name: {{ $c }}
          image: {{ include "portal.image" . }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          command: ["gunicorn"]
          args:
            - consortium.wsgi
            # Prometheus multiprocess bookkeeping (consortium/gunicorn.conf.py).
            - --config=/app/gunicorn.conf.py
            - --bind=0.0.0.0:{{ .Values.web.port }}
            - --workers={{ $v.workers }}
            - --timeout={{ $v.timeoutSeconds }}
            - --worker-tmp-dir=/tmp
            - --access-logfile=-
            - --error-logfile=-
          ports:
            - name: http
              containerPort: {{ .Values.web.port }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "portal.settingsName" . }}
          env:
            {{- include "portal.env" . | nindent 12 }}
            # Each gunicorn worker writes its metrics here; /metrics adds them up.
            - name: PROMETHEUS_MULTIPROC_DIR
              value: /run/prometheus
            {{- with $v.niceness }}
            # Lower CPU priority for the bulk transfers (consortium/gunicorn.conf.py).
            - name: CONSORTIUM_WEB_NICENESS
              value: {{ . | quote }}
            {{- end }}
            {{- with .Values.metrics.token.existingSecret }}
            # Only the web tier holds the token (settings would refuse a missing file).
            - name: CONSORTIUM_METRICS_TOKEN_FILE
              value: /run/secrets/metrics-token/{{ $r.Values.metrics.token.key }}
            {{- end }}
          startupProbe:
            httpGet:
              path: {{ .Values.probes.livenessPath }}
              port: http
              httpHeaders:
                - name: Host
                  value: {{ .Values.probes.hostHeader }}
            periodSeconds: 5
            failureThreshold: 30
          livenessProbe:
            httpGet:
              path: {{ .Values.probes.livenessPath }}
              port: http
              httpHeaders:
                - name: Host
                  value: {{ .Values.probes.hostHeader }}
            periodSeconds: 10
            timeoutSeconds: 5
            failureThreshold: 3
          readinessProbe:
            httpGet:
              path: {{ .Values.probes.readinessPath }}
              port: http
              httpHeaders:
                - name: Host
                  value: {{ .Values.probes.hostHeader }}
            periodSeconds: 10
            timeoutSeconds: 5
            failureThreshold: 3
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- include "portal.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            {{- include "portal.baseMounts" . | nindent 12 }}
            - name: blobs
              mountPath: {{ .Values.blobStorage.mountPath }}
            {{- include "portal.s3Mount" . | nindent 12 }}
            - name: prometheus-multiproc
              mountPath: /run/prometheus
            {{- if .Values.metrics.token.existingSecret }}
            - name: metrics-token
              mountPath: /run/secrets/metrics-token
              readOnly: true
            {{- end }}
      volumes:
        {{- include "portal.baseVolumes" . | nindent 8 }}
        {{- include "portal.blobVolume" . | nindent 8 }}
        # Memory-backed: workers update these files on every request.
        - name: prometheus-multiproc
          emptyDir:
            medium: Memory
            sizeLimit: {{ .Values.metrics.multiprocDirSizeLimit }}
        {{- with .Values.metrics.token.existingSecret }}
        - name: metrics-token
          secret:
            secretName: {{ . }}
            defaultMode: 0440
            items:
              - key: {{ $r.Values.metrics.token.key }}
                path: {{ $r.Values.metrics.token.key }}
        {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
{{- end }}
