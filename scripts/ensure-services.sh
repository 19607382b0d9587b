#!/usr/bin/env bash
# Start or install what the test suite needs when it is missing: PostgreSQL on
# 127.0.0.1:5432, and Chromium at /usr/bin/chromium for the browser tests.
set -euo pipefail
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "PostgreSQL is down; starting it"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
  pg_isready -h 127.0.0.1 -p 5432
fi
if [ ! -x /usr/bin/chromium ]; then
  echo "Chromium is missing (tests/test_ui.py drives it); installing it with apt"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get install -y chromium || { $sudo apt-get update && $sudo apt-get install -y chromium; }
fi
