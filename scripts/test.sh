#!/usr/bin/env bash
# The whole test suite: formatting, vet, and every Go test with the race detector.
# Installs what the tests need (PostgreSQL server binaries) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
export GOFLAGS=${GOFLAGS:--buildvcs=false}

# The PostgreSQL tests start throwaway clusters; make sure the server binaries exist.
./scripts/install-postgres.sh
# The web console's browser tests drive headless Chromium (they skip loudly without it).
./scripts/install-chromium.sh

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt needed on:"; echo "$unformatted"; exit 1
fi
go vet ./...
# go test in package-list mode prints only "ok" for a passing package, hiding the loud
# banners of tests that skip because something is missing here. testreport prints every
# package's result line, failed tests in full, and every skipped test with its reason.
go build -o "${TMPDIR:-/tmp}/gatehouse-testreport.$$" ./scripts/testreport
trap 'rm -f "${TMPDIR:-/tmp}/gatehouse-testreport.$$"' EXIT
set +e
go test -race -timeout 20m -json ./... | "${TMPDIR:-/tmp}/gatehouse-testreport.$$"
status=("${PIPESTATUS[@]}")
set -e
if [ "${status[0]}" -ne 0 ] || [ "${status[1]}" -ne 0 ]; then
  exit 1
fi
