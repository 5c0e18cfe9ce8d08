#!/usr/bin/env bash
# Install, where missing, the services the team tests (tests/test_team.py) start for real:
#   - PostgreSQL server binaries (initdb, pg_ctl): required; installed with apt if absent.
#     No default cluster is created or started: the tests run their own private cluster.
#   - Chromium: optional (the UI check is skipped without it); a failed install is not an error.
# Idempotent: does nothing when both are present. Needs root or password-less sudo to install.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
fi
can_install() { command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; }; }

apt_updated=0
apt_install() {  # apt_install PACKAGE...
  can_install || return 1
  if [ "$apt_updated" -eq 0 ]; then
    $SUDO timeout 600 apt-get update -qq || return 1
    apt_updated=1
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive timeout 1200 \
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

have_postgres() { compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1; }
have_chromium() {
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
    || command -v google-chrome >/dev/null 2>&1
}

if ! have_postgres; then
  echo "ci_services: installing the PostgreSQL server (apt)" >&2
  if can_install; then
    # postgresql-common would create and start a "main" cluster on port 5432: not wanted.
    $SUDO mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.d/sf_ml.conf >/dev/null
  fi
  apt_install postgresql || true
  if ! have_postgres; then
    echo "ci_services: PostgreSQL server binaries (initdb) are missing and could not be installed;" \
         "install them (apt-get install postgresql) or deselect the team tests (-m 'not server')" >&2
    exit 1
  fi
fi
# As root, the tests run initdb/pg_ctl as the "postgres" user (initdb refuses root).
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi

if ! have_chromium; then
  echo "ci_services: installing chromium for the UI check (optional)" >&2
  apt_install chromium || echo "ci_services: chromium not installed; the UI check will be skipped" >&2
fi

echo "ci_services: PostgreSQL $(ls -d /usr/lib/postgresql/*/ 2>/dev/null | xargs -n1 basename | tr '\n' ' ')ok;" \
     "chromium $(have_chromium && echo ok || echo absent)" >&2
