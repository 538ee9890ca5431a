#!/usr/bin/env bash
# Runs every test of signalchannel: the Go suite with the race detector, the
# JavaScript client's tests against the real server, and the browser tests.
# On a fresh machine it first installs what the tests need (npm packages,
# and Debian's chromium when run as root).
set -euo pipefail
cd "$(dirname "$0")/.."

for dir in js js/interop; do
	if [ -f "$dir/package-lock.json" ] && [ ! -d "$dir/node_modules" ]; then
		npm ci --prefix "$dir" --no-audit --no-fund
	fi
done
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	apt-get update && apt-get install -y chromium || echo "WARNING: could not install chromium; the browser tests will skip" >&2
fi

go vet ./...
go test -race -timeout 20m ./...
if [ -f js/package.json ]; then
	npm test --prefix js
fi
