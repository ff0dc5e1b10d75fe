#!/usr/bin/env bash
# Runs every Go fuzz target in the module for the given budget each.
#
# The budget is a count of executions ("30000x") by default. A duration
# ("10s") also works, but Go 1.26's fuzz coordinator can report a spurious
# "context deadline exceeded" failure when a duration runs out while a worker
# is mid-call (golang/go#75804, fixed in Go 1.27); a count never races that
# deadline, so CI uses one.
set -euo pipefail
budget=${1:-30000x}
cd "$(dirname "$0")/.."
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | awk '{print $2}' | sort -u); do
    echo "== $pkg $f ($budget)"
    go test -run "^$" -fuzz "^$f\$" -fuzztime "$budget" -fuzzminimizetime=100x "$pkg"
  done
done
