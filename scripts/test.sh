#!/usr/bin/env bash
# The whole test suite: formatting, vet, and every Go test with the race detector.
# Installs what the tests need (PostgreSQL server binaries) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
export GOFLAGS=${GOFLAGS:--buildvcs=false}

# The PostgreSQL tests start throwaway clusters; make sure the server binaries exist.
./scripts/install-postgres.sh

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt needed on:"; echo "$unformatted"; exit 1
fi
go vet ./...
go test -race -timeout 20m ./...
