#!/usr/bin/env bash
# Set up the environment (idempotent) and run the whole pipeline on a synthetic world:
# generate -> build_features -> train -> promote -> score, as child runs of one `main` run.
# Steps already run with the same parameters at the same git commit are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export PATH="$PWD/.venv/bin:$PATH"
export SPARK_LOCAL_IP=127.0.0.1
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db}
mlflow run . -e main --env-manager local --experiment-name sf_ml \
  -P workdir=data -P n_companies="${N_COMPANIES:-5000}" -P config="${CONFIG:-xgboost_history}"
echo "alert list: $PWD/data/scores/2025-12-01/alert_list.json"
echo "runs: $MLFLOW_TRACKING_URI  (browse: .venv/bin/mlflow ui --backend-store-uri $MLFLOW_TRACKING_URI)"
