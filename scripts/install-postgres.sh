#!/usr/bin/env bash
# Installs the PostgreSQL server binaries (initdb, pg_ctl, postgres) that the PostgreSQL
# tests need (store/postgres/pgtest starts throwaway clusters with them), when they are
# missing. Debian/Ubuntu (apt); PostgreSQL 15, the version of Debian 12. Silent and quick
# when they are already there; safe to run again.
#
# Only the binaries are wanted: no cluster is created and no server is started.
set -euo pipefail

found() {
  command -v initdb >/dev/null 2>&1 && return 0
  local f
  for f in /usr/lib/postgresql/*/bin/initdb; do
    [ -x "$f" ] && return 0
  done
  return 1
}

if [ -n "${PGTEST_BINDIR:-}" ] && [ -x "$PGTEST_BINDIR/initdb" ]; then
  exit 0
fi
if found; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-postgres: initdb not found and this is not an apt system: install the PostgreSQL 15 server binaries (or set PGTEST_BINDIR to their directory)" >&2
  exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo -n)
  else
    echo "install-postgres: initdb not found; installing PostgreSQL needs root (or sudo)" >&2
    exit 1
  fi
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
run() {
  if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive "$@" >>"$log" 2>&1; then
    echo "install-postgres: failed: $*" >&2
    cat "$log" >&2
    exit 1
  fi
}

echo "install-postgres: installing the PostgreSQL server binaries (apt-get)..." >&2
run apt-get update -qq
# postgresql-common first, told not to create (and start) a default cluster when the
# server package is installed.
run apt-get install -y -qq --no-install-recommends postgresql-common
if [ -f /etc/postgresql-common/createcluster.conf ]; then
  run sed -ri 's/^#?[[:space:]]*create_main_cluster[[:space:]]*=.*$/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf
fi
if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 >>"$log" 2>&1; then
  run apt-get install -y -qq --no-install-recommends postgresql
fi

if ! found; then
  echo "install-postgres: installed, but initdb is still not found" >&2
  cat "$log" >&2
  exit 1
fi
echo "install-postgres: $(ls -d /usr/lib/postgresql/*/bin | tail -n 1)" >&2
