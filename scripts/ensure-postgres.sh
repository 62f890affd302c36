#!/usr/bin/env bash
# The controller's tests create and drop their own database on the PostgreSQL server at
# 127.0.0.1:5432 (user postgres). Install and start a local server when none answers.
set -euo pipefail
ready() { command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; }
ready && exit 0
here="$(cd "$(dirname "$0")" && pwd)"
bash "$here/install-system-packages.sh" postgresql postgresql-client
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
for version in $(ls /etc/postgresql 2>/dev/null); do
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
done
for _ in $(seq 1 30); do ready && exit 0; sleep 1; done
echo "PostgreSQL does not answer on 127.0.0.1:5432; the controller's PostgreSQL tests need it" >&2
exit 1
