#!/usr/bin/env bash
# Peak memory of `rangefleet scan` over ~1 GiB of generated records (2 colours x
# 7 days x 960,000 records x 80 bytes = 1.07 GB): scan must stream its ranges, not
# hold the input, so peak RSS should stay far below the input size. Also checks the
# output against gen's _expected.json and prints the wall time and throughput.
#
#   bench/rss.sh         # RECORDS=960000 per partition; WORK=/some/dir to keep data off /tmp
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rangefleet/target}"
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
cargo build --release -q -p rangefleet
bin="$CARGO_TARGET_DIR/release/rangefleet"
for sub in gen scan; do
    "$bin" "$sub" --help >/dev/null 2>&1 || { echo "rangefleet $sub is not available in this build" >&2; exit 1; }
done

work="$(mktemp -d "${WORK:-${TMPDIR:-/tmp}}/rangefleet-rss.XXXXXX")"
trap 'rm -rf "$work"' EXIT
data="$work/data"
"$bin" gen --out "$data" --colors yellow,green --days 2016-01-01..2016-01-07 \
    --records "${RECORDS:-960000}" --seed 7 --bad-every 997
mv "$data/_expected.json" "$work/expected.json"
bytes="$(du -sb "$data" | cut -f1)"

/usr/bin/time -v -o "$work/time.txt" \
    "$bin" scan "file://$data" --processor taxi-stats --json >"$work/scan.json"
python3 - "$work/time.txt" "$work/scan.json" "$work/expected.json" "$bytes" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
scan, expected = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
size = int(sys.argv[4])
if {"partitions": scan["partitions"], "total": scan["total"]} != expected:
    sys.exit("MISMATCH: scan output differs from gen's _expected.json")
rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall.split(":"))))
print(f"input {size / 2**30:.2f} GiB; peak RSS {rss_kb / 1024:.1f} MiB "
      f"({rss_kb * 1024 / size:.1%} of the input); wall {secs:.2f} s "
      f"({size / secs / 1e9:.2f} GB/s); output matches _expected.json")
PY
