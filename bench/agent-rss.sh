#!/usr/bin/env bash
# Peak memory and throughput of one agent over 20,000 small jobs: gen 4 partitions
# (2 colours x 2 days) x 50,000 records, plan 10 records a job onto a SQLite queue, run
# `rangefleet agent --no-imds --until-empty` (release build) under /usr/bin/time -v,
# check reduce against gen's _expected.json, print peak RSS and jobs per second.
# Goal: peak RSS under 64 MiB. Per-job overhead, not bytes, is what this measures.
#
#   bench/agent-rss.sh        # RECORDS=50000 PER_JOB=10 CONCURRENCY=4; WORK=/dir for the data
#   CONCURRENCY=auto bench/agent-rss.sh           # no concurrency key: the agent sizes itself
#   RANGEFLEET=/path/to/rangefleet bench/agent-rss.sh   # another build (a baseline)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rangefleet/target}"
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
if [ -n "${RANGEFLEET:-}" ]; then
    bin="$RANGEFLEET"
else
    cargo build --release -q -p rangefleet
    bin="$CARGO_TARGET_DIR/release/rangefleet"
fi

records="${RECORDS:-50000}"
per_job="${PER_JOB:-10}"
concurrency="${CONCURRENCY:-4}"
work="$(mktemp -d "${WORK:-${TMPDIR:-/tmp}}/rangefleet-agent-rss.XXXXXX")"
trap 'rm -rf "$work"' EXIT
data="$work/data" out="$work/out" db="$work/q.db"

"$bin" gen --out "$data" --colors yellow,green --days 2016-01-01..2016-01-02 \
    --records "$records" --seed 11 --bad-every 997 >/dev/null
"$bin" plan "file://$data/" --queue "sqlite://$db" --results "file://$out/" \
    --processor taxi-stats --records-per-job "$per_job"
cat >"$work/agent.yaml" <<EOF
queue: sqlite://$db
inputs: ["file://$data/"]
results: file://$out/
lease_seconds: 60
EOF
[ "$concurrency" = auto ] || echo "concurrency: $concurrency" >>"$work/agent.yaml"

/usr/bin/time -v -o "$work/time.txt" \
    "$bin" agent --no-imds --config "$work/agent.yaml" --instance-id i-bench \
    --until-empty --log-format text 2>"$work/agent.log" ||
    { tail -20 "$work/agent.log" >&2; exit 1; }
"$bin" reduce --results "file://$out/" --json >"$work/reduce.json"

python3 - "$work/time.txt" "$work/reduce.json" "$data/_expected.json" "$out/_instances/i-bench.json" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
reduced, expected = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
summary = json.load(open(sys.argv[4]))
if {"partitions": reduced["partitions"], "total": reduced["total"]} != expected:
    sys.exit("MISMATCH: reduce output differs from gen's _expected.json")
cov = reduced["coverage"]
if cov["missing"] or cov["unexpected"] or cov["done"] != cov["planned"]:
    sys.exit(f"INCOMPLETE: {cov}")
rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall.split(":"))))
jobs = summary["done"]
verdict = "under" if rss_kb < 64 * 1024 else "OVER"
print(f"{jobs} jobs in {secs:.2f} s: {jobs / secs:.0f} jobs/s; "
      f"peak RSS {rss_kb / 1024:.1f} MiB ({verdict} the 64 MiB goal); reduce matches _expected.json")
PY
