#!/usr/bin/env bash
# Set up the environment (idempotent) and run the demo end to end on a synthetic world.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export PATH="$PWD/.venv/bin:$PATH"
export SPARK_LOCAL_IP=127.0.0.1
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db}
N_COMPANIES=${N_COMPANIES:-5000}
mlflow run . -e generate --env-manager local --experiment-name sf_ml \
  -P output_dir=data/raw -P n_companies="$N_COMPANIES"
mlflow run . -e ingest --env-manager local --experiment-name sf_ml \
  -P raw_dir=data/raw -P output_dir=data/typed
mlflow run . -e build_features --env-manager local --experiment-name sf_ml \
  -P raw_dir=data/raw -P output_dir=data/features -P config=standard
echo "demo done: raw world in data/raw, features in data/features; runs in $MLFLOW_TRACKING_URI (mlflow ui --backend-store-uri $MLFLOW_TRACKING_URI)"
