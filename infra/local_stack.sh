#!/usr/bin/env bash
# Start (or stop) the long-lived local services a researcher uses day to day (servers on 127.0.0.1):
#   Prefect API + UI :4200, MLflow UI :5000, a Ray head node (token auth on; flows attach only
#   when RAY_ADDRESS=auto is exported, otherwise each command starts a private Ray runtime),
#   and `seedflow serve`, which makes every flow runnable from the Prefect UI.
# Usage: infra/local_stack.sh start|stop     (logs and pids under .cache/stack/)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/.venv/bin"
state="$root/.cache/stack"
mkdir -p "$state"
export PREFECT_HOME="$root/.prefect" PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_API_URL=http://127.0.0.1:4200/api MLFLOW_TRACKING_URI="sqlite:///$root/mlflow.db"

start() {
  "$bin/prefect" server start --host 127.0.0.1 --port 4200 >"$state/prefect.log" 2>&1 & echo $! >"$state/prefect.pid"
  "$bin/mlflow" server --backend-store-uri "$MLFLOW_TRACKING_URI" --default-artifact-root "$root/mlartifacts" \
    --host 127.0.0.1 --port 5000 --workers 1 >"$state/mlflow.log" 2>&1 & echo $! >"$state/mlflow.pid"
  "$bin/ray" start --head --node-ip-address 127.0.0.1 --include-dashboard false >"$state/ray.log" 2>&1
  for _ in $(seq 90); do curl -sf "$PREFECT_API_URL/health" >/dev/null && break; sleep 1; done
  (cd "$root" && RAY_ADDRESS=auto "$bin/seedflow" serve >"$state/serve.log" 2>&1 & echo $! >"$state/serve.pid")
  echo "Prefect UI http://127.0.0.1:4200 | MLflow UI http://127.0.0.1:5000 | Ray head on 127.0.0.1"
  echo "export PREFECT_API_URL=$PREFECT_API_URL RAY_ADDRESS=auto"
}

stop() {
  for name in serve mlflow prefect; do
    [ -f "$state/$name.pid" ] && kill "$(cat "$state/$name.pid")" 2>/dev/null || true
    rm -f "$state/$name.pid"
  done
  "$bin/ray" stop >/dev/null 2>&1 || true
}

case "${1:-}" in start) start ;; stop) stop ;; *) echo "usage: $0 start|stop" >&2; exit 2 ;; esac
