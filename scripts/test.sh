#!/usr/bin/env bash
# Runs every test of signalchannel: the Go suite with the race detector, the
# JavaScript client's tests against the real server, and the browser tests.
# Every suite runs even when one before it failed; the last line sums them
# up ("N passed, N failed, N skipped") and the exit status is non-zero if
# any test failed. On a fresh machine it first installs what the tests need
# (npm packages, and Debian's chromium when run as root).
set -uo pipefail
cd "$(dirname "$0")/.."

for dir in js js/interop; do
	if [ -f "$dir/package-lock.json" ] && [ ! -d "$dir/node_modules" ]; then
		npm ci --prefix "$dir" --no-audit --no-fund || echo "WARNING: npm ci in $dir failed; its tests will fail" >&2
	fi
done
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	apt-get update && apt-get install -y chromium || echo "WARNING: could not install chromium; the browser tests will skip" >&2
fi
if ! command -v openssl >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	apt-get update && apt-get install -y openssl || echo "WARNING: could not install openssl; the JavaScript TLS test will fail" >&2
fi

# The npm scuttlebutt interoperability test skips under a plain `go test`
# when its packages are missing; here it must run.
export SIGNALCHANNEL_REQUIRE_INTEROP=1

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
passed=0 failed=0 skipped=0 parts=()

# count NAME P F S adds one suite's counts to the totals.
count() {
	passed=$((passed + $2)) failed=$((failed + $3)) skipped=$((skipped + $4))
	parts+=("$1 $2/$3/$4")
}

echo "== Go: go vet, then go test -race"
if ! go vet ./...; then
	count vet 0 1 0
fi
if go build -o "$scratch/testsummary" ./scripts/testsummary; then
	go test -race -timeout 20m -json ./... 2>&1 | "$scratch/testsummary" | tee "$scratch/go.txt"
	read -r p f s < <(sed -nE 's/^go: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped$/\1 \2 \3/p' "$scratch/go.txt" | tail -n 1)
	count go "${p:-0}" "${f:-1}" "${s:-0}"
else
	count go 0 1 0
fi

# js NAME SCRIPT runs one npm script of js/ and counts what node's test
# runner reports (TAP when piped: "# pass N"; "ℹ pass N" from its spec
# reporter).
js() {
	echo "== JavaScript: $1"
	npm run --silent "$2" --prefix js 2>&1 | tee "$scratch/$1.txt"
	local rc=${PIPESTATUS[0]} p f s c
	total() { grep -E "^(# |ℹ )$1 [0-9]+\$" "$scratch/$2.txt" | tail -n 1 | grep -oE '[0-9]+$'; }
	p=$(total pass "$1") f=$(total fail "$1") s=$(total skipped "$1") c=$(total cancelled "$1")
	f=$(( ${f:-0} + ${c:-0} ))
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1 # the runner failed without a test to blame
	fi
	count "$1" "${p:-0}" "$f" "${s:-0}"
}

if [ -f js/package.json ]; then
	# One server binary for both JavaScript suites.
	if go build -o "$scratch/signalchannel" ./cmd/signalchannel; then
		export SIGNALCHANNEL_BIN="$scratch/signalchannel"
		js js test:unit
		js browser test:browser
	else
		count js 0 1 0
	fi
fi

echo
echo "== per suite (passed/failed/skipped): ${parts[*]}"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
