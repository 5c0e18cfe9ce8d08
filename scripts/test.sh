#!/usr/bin/env bash
# Set up the environment (idempotent) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
# PostgreSQL server binaries (and chromium, optional) for the team tests, installed where missing.
bash scripts/ci_services.sh || echo "test.sh: the team tests (-m server) need PostgreSQL; see above" >&2
export PATH="$PWD/.venv/bin:$PATH"
export SPARK_LOCAL_IP=127.0.0.1
exec python -m pytest tests "$@"
