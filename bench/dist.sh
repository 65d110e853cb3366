#!/usr/bin/env bash
# The shipped binary: its size against the 16 MB goal, and what its size-optimised
# dependencies (profile `dist`: opt-level "s" except the rangefleet crate) cost in
# speed, measured against the release build in the same run with hyperfine:
#   scan   taxi-stats over gen'd data (the data path: reads, parsing, merging)
#   agent  one agent through 20,000 small jobs on SQLite (per-job overhead)
# Both binaries must agree with gen's _expected.json before anything is timed.
#
#   bench/dist.sh        # RECORDS=400000 per scan partition (2 colours x 7 days); RUNS=5
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rangefleet/target}"
command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null; }
runs="${RUNS:-5}"

cargo build --release -q -p rangefleet
release="$CARGO_TARGET_DIR/release/rangefleet"
# scripts/dist keeps its own target dir; it prints the size.
CARGO_TARGET_DIR='' scripts/dist
dist="$repo/dist/rangefleet-x86_64-linux"
size=$(stat -c %s "$dist")
verdict=$([ "$size" -le 16000000 ] && echo "within" || echo "OVER")
echo "dist binary: $size bytes ($verdict the 16 MB goal); release build: $(stat -c %s "$release") bytes (not stripped, no LTO)"
size -A "$dist" | awk '$1 ~ /^\.(text|rodata|eh_frame|rela\.dyn|data\.rel\.ro)$/ {printf "  %-14s %10d\n", $1, $2}'

work="$(mktemp -d "${WORK:-${TMPDIR:-/tmp}}/rangefleet-dist.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# scan: both binaries give gen's expected totals, then the timing.
"$release" gen --out "$work/scan" --colors yellow,green --days 2016-01-01..2016-01-07 \
    --records "${RECORDS:-400000}" --seed 42 --bad-every 1000 >/dev/null
mv "$work/scan/_expected.json" "$work/scan-expected.json"
for b in "$release" "$dist"; do
    "$b" scan --processor taxi-stats --json "file://$work/scan/" >"$work/scan-out.json"
    python3 - "$work/scan-out.json" "$work/scan-expected.json" "$b" <<'PY'
import json, sys
got, want = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
if {"partitions": got["partitions"], "total": got["total"]} != want:
    sys.exit(f"MISMATCH: {sys.argv[3]} scan differs from _expected.json")
PY
done
hyperfine -N -w 2 -r "$((runs * 2))" --export-json "$work/scan.json" \
    -n release "$release scan --processor taxi-stats file://$work/scan/" \
    -n dist "$dist scan --processor taxi-stats file://$work/scan/" >/dev/null

# agent: 20,000 jobs of 10 records, re-planned before each run.
"$release" gen --out "$work/jobs" --colors yellow,green --days 2016-01-01..2016-01-02 \
    --records 50000 --seed 11 --bad-every 997 >/dev/null
cat >"$work/agent.yaml" <<EOF
queue: sqlite://$work/q.db
inputs: ["file://$work/jobs/"]
results: file://$work/out/
concurrency: 4
lease_seconds: 60
EOF
prepare="rm -rf $work/q.db $work/q.db-wal $work/q.db-shm $work/out && $release plan file://$work/jobs/ \
--queue sqlite://$work/q.db --results file://$work/out/ --processor taxi-stats --records-per-job 10 >/dev/null 2>&1"
agent="agent --no-imds --config $work/agent.yaml --instance-id i-bench --until-empty --log-format text"
hyperfine -N -r "$runs" --prepare "bash -c '$prepare'" --export-json "$work/agent.json" \
    -n release "$release $agent" -n dist "$dist $agent" >/dev/null
"$dist" reduce --results "file://$work/out/" --json >"$work/reduce.json"

python3 - "$work/scan.json" "$work/agent.json" "$work/reduce.json" "$work/jobs/_expected.json" <<'PY'
import json, sys
reduced, expected = json.load(open(sys.argv[3])), json.load(open(sys.argv[4]))
if {"partitions": reduced["partitions"], "total": reduced["total"]} != expected:
    sys.exit("MISMATCH: the dist agent's results differ from _expected.json")
for name, path in (("scan", sys.argv[1]), ("agent, 20,000 jobs", sys.argv[2])):
    r = {x["command"]: x for x in json.load(open(path))["results"]}
    rel, dist = r["release"]["median"], r["dist"]["median"]
    print(f"{name}: release {rel * 1000:.0f} ms, dist {dist * 1000:.0f} ms (median); "
          f"dist/release = {dist / rel:.2f}")
PY
