#!/usr/bin/env bash
# rangefleet scan against the seed slides' baseline (multiprocessing.Pool over range
# reads, ../shared/baselines/seed_pool.py) on the same generated data: first checks
# that both give exactly the same taxi-stats per partition and in total (and that
# both match gen's _expected.json), then times both with hyperfine and prints the
# ratio of the medians.
#
#   bench/vs-seed.sh     # RECORDS=100000 per partition, 2 colours x 7 days; RUNS=5
#   SEED_POOL=/path/to/seed_pool.py bench/vs-seed.sh
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rangefleet/target}"
seed_pool="$(realpath "${SEED_POOL:-../shared/baselines/seed_pool.py}")"
[ -f "$seed_pool" ] || { echo "seed_pool.py not found at $seed_pool (set SEED_POOL)" >&2; exit 2; }
command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null; }
cargo build --release -q -p rangefleet
bin="$CARGO_TARGET_DIR/release/rangefleet"
for sub in gen scan; do
    "$bin" "$sub" --help >/dev/null 2>&1 || { echo "rangefleet $sub is not available in this build" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
data="$work/data"
"$bin" gen --out "$data" --colors yellow,green --days 2016-01-01..2016-01-07 \
    --records "${RECORDS:-100000}" --seed 42 --bad-every 1000
# seed_pool reads every file under the data dir; keep only the partitions there.
mv "$data/_expected.json" "$work/expected.json"

python3 "$seed_pool" "$data" >"$work/seed.json"
"$bin" scan "file://$data" --processor taxi-stats --json >"$work/scan.json"
python3 - "$work/seed.json" "$work/scan.json" "$work/expected.json" <<'PY'
import json, sys
seed, scan, expected = (json.load(open(p)) for p in sys.argv[1:4])
def core(d):
    return {"partitions": d["partitions"], "total": d["total"]}
bad = False
for name, other in (("seed_pool", seed), ("gen's _expected.json", expected)):
    if core(other) != core(scan):
        bad = True
        print(f"MISMATCH: rangefleet scan vs {name}", file=sys.stderr)
        for part in sorted(set(other["partitions"]) | set(scan["partitions"])):
            a, b = other["partitions"].get(part), scan["partitions"].get(part)
            if a != b:
                print(f"  {part}:\n    {name}: {a}\n    scan: {b}", file=sys.stderr)
        if other["total"] != scan["total"]:
            print(f"  total:\n    {name}: {other['total']}\n    scan: {scan['total']}", file=sys.stderr)
if bad:
    sys.exit(1)
t = scan["total"]
print(f"agree: {len(scan['partitions'])} partitions, {t['records']} good + "
      f"{t['bad_records']} bad records")
PY

hyperfine --warmup 1 --runs "${RUNS:-5}" --export-json "$work/times.json" \
    -n seed_pool "python3 $seed_pool $data" \
    -n rangefleet "$bin scan file://$data --processor taxi-stats --json"
python3 - "$work/times.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
s, f = r["seed_pool"]["median"], r["rangefleet"]["median"]
print(f"median: seed_pool {s*1000:.1f} ms, rangefleet scan {f*1000:.1f} ms: "
      f"rangefleet is {s/f:.1f}x faster")
PY
