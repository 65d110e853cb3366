#!/usr/bin/env bash
# Throughput against a model of S3 on EC2: the agent with its default config (no
# concurrency, no max_throughput_gbps), booted from imds-mock as a c5n.large (2 vCPUs,
# up to 25 Gbit/s), beside the seed's sizing (concurrency: 4 = 2 x vCPUs) in the same
# run, both reading gen's data over http:// through tests/src/netmodel.rs in front of
# nginx.
#
# The model keeps S3's ratios scaled down to what 2 shared cores can drive: a
# per-connection cap of 90 MB/s / SCALE, an instance cap worth CONNECTIONS connections,
# a first-byte latency of 30 ms x SCALE (defaults: 6 MB/s, 32 connections = 192 MB/s,
# 450 ms). Prints, per run: MB/s and % of the instance cap over the GET window (first
# GET to last byte, from the model's byte timeline), the rate of the last 10 % of the
# bytes, peak GETs in flight, peak RSS (/usr/bin/time -v), CPU seconds per GB; checks
# reduce against gen's _expected.json; draws both timelines to CHART
# (docs/throughput.png) with bench/throughput_chart.py.
#
#   bench/throughput.sh      # CONNECTIONS=32 SCALE=15 INSTANCE_TYPE=c5n.large
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rangefleet/target}"
venv="${RANGEFLEET_VENV:-$HOME/.cache/rangefleet/venv}"
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] ||
    { apt-get update -qq && apt-get install -y -qq nginx >/dev/null; }
cargo build --release -q -p rangefleet
cargo build -q -p rangefleet-tests --bin netmodel
bin="$CARGO_TARGET_DIR/release/rangefleet"
netmodel="$CARGO_TARGET_DIR/debug/netmodel"

connections="${CONNECTIONS:-32}"
scale="${SCALE:-15}"
instance_type="${INSTANCE_TYPE:-c5n.large}"
# 48 jobs of about 8 parts: 2 colours x 4 days x 6 jobs of 838,856 records (64 MiB).
# Long enough in part-times for the steady state to dominate, as in a real plan.
per_job=838856
records=$((6 * per_job))
work="$(mktemp -d "${WORK:-${TMPDIR:-/tmp}}/rangefleet-throughput.XXXXXX")"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
data="$work/data"
"$bin" gen --out "$data" --colors yellow,green --days 2016-01-01..2016-01-04 \
    --records "$records" --seed 5 --bad-every 499 >/dev/null

# run NAME SUBDIR CONFIG_EXTRA: plans SUBDIR of the data over http:// through a fresh
# model, runs one agent to the end, and leaves $work/NAME/{stats.json,time.txt,reduce.json,agent.log}.
run() {
    local name="$1" subdir="$2" extra="$3"
    local dir="$work/$name"
    mkdir -p "$dir"
    "$netmodel" --serve "$data" --connections "$connections" --scale "$scale" \
        >"$dir/model.url" 2>"$dir/model.log" &
    local model_pid=$!
    pids+=("$model_pid")
    until [ -s "$dir/model.url" ]; do sleep 0.05; done
    local url
    url="$(head -1 "$dir/model.url")"
    # nginx cannot list: plan the files, then point the jobs at the same files over
    # http://, with the ETags nginx gives them (If-Match is checked on every part).
    "$bin" plan "file://$data/$subdir" --queue "sqlite://$dir/q.db" \
        --results "file://$dir/out/" --processor taxi-stats --records-per-job "$per_job" \
        2>"$dir/plan.log"
    python3 - "$dir/q.db" "file://$data/" "$url/" "$data" "$dir/out/_plan.json" <<'PY'
import json, os, sqlite3, sys, urllib.parse
db, file_prefix, http_prefix, root, manifest_path = sys.argv[1:]
def etag(rel):
    st = os.stat(os.path.join(root, urllib.parse.unquote(rel)))
    return '"%x-%x"' % (int(st.st_mtime), st.st_size)
c = sqlite3.connect(db)
for rowid, body in c.execute("SELECT id, body FROM jobs").fetchall():
    j = json.loads(body)
    rel = j["source"][len(file_prefix):]
    j["source"] = http_prefix + rel
    j["etag"] = etag(rel)
    c.execute("UPDATE jobs SET body = ? WHERE id = ?", (json.dumps(j), rowid))
c.commit()
# The manifest moves with the jobs: reduce checks each result's source and ETag.
with open(manifest_path) as f:
    m = json.load(f)
rel_prefix = m["prefix"][len(file_prefix):]
m["prefix"] = http_prefix + rel_prefix
for o in m["objects"]:
    o["etag"] = etag(rel_prefix + o["key"])
with open(manifest_path, "w") as f:
    json.dump(m, f)
PY
    cat >"$dir/agent.yaml" <<EOF
queue: sqlite://$dir/q.db
inputs: ["$url/"]
results: file://$dir/out/
lease_seconds: 120
$extra
EOF
    "$bin" imds-mock --userdata "$dir/agent.yaml" --instance-id "i-$name" \
        --instance-type "$instance_type" >"$dir/imds.url" 2>/dev/null &
    pids+=($!)
    until [ -s "$dir/imds.url" ]; do sleep 0.05; done
    RANGEFLEET_LOG_FORMAT=json AWS_EC2_METADATA_SERVICE_ENDPOINT="$(head -1 "$dir/imds.url")" \
        /usr/bin/time -v -o "$dir/time.txt" "$bin" agent --until-empty 2>"$dir/agent.log" ||
        { tail -20 "$dir/agent.log" >&2; exit 1; }
    curl -fsS "$url/_netmodel/stats" >"$dir/stats.json"
    kill "$model_pid"
    "$bin" reduce --results "file://$dir/out/" --json >"$dir/reduce.json"
}

echo "throughput: model $connections connections' worth, scale 1/$scale; agent as $instance_type"
run default "" ""
seed_partition="color=yellow/date=2016-01-01"
run seed "$seed_partition/" "concurrency: 4"

python3 - "$work" "$data/_expected.json" "$seed_partition" >"$work/figures.json" <<'PY'
import json, re, sys
work, expected, SEED_PARTITION = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
out = {}
for name in ("default", "seed"):
    d = f"{work}/{name}"
    stats, reduced = json.load(open(f"{d}/stats.json")), json.load(open(f"{d}/reduce.json"))
    cov = reduced["coverage"]
    if cov["missing"] or cov["unexpected"] or cov["done"] != cov["planned"]:
        sys.exit(f"{name}: INCOMPLETE: {cov}")
    # The seed run reads one partition (planned from its folder, so unnamed in reduce).
    want = expected["total"] if name == "default" else expected["partitions"][SEED_PARTITION]
    if reduced["total"] != want:
        sys.exit(f"{name}: MISMATCH: reduce's total differs from gen's _expected.json")
    if name == "default" and reduced["partitions"] != expected["partitions"]:
        sys.exit(f"{name}: MISMATCH in a partition")
    t = open(f"{d}/time.txt").read()
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
    cpu = sum(float(re.search(rf"{k} time \(seconds\): ([\d.]+)", t).group(1)) for k in ("User", "System"))
    ready = next(json.loads(l) for l in open(f"{d}/agent.log") if '"agent_ready"' in l)["fields"]
    cap = stats["model"]["instance_bytes_per_s"]
    out[name] = {
        "jobs": cov["done"], "bytes": stats["bytes"], "window_s": round(stats["window_s"], 2),
        "mb_per_s": round(stats["bytes_per_s"] / 1e6, 1),
        "pct_of_cap": round(100 * stats["bytes_per_s"] / cap, 1),
        "tail_10pct_pct_of_cap": round(100 * stats["tail_10pct_bytes_per_s"] / cap, 1),
        "peak_gets_in_flight": stats["peak_in_flight"], "gets": stats["gets"],
        "splits": json.load(open(f"{d}/out/_instances/i-{name}.json"))["throughput"]["window"]["splits"],
        "peak_rss_mib": round(rss / 1024, 1), "cpu_s_per_gb": round(cpu / (stats["bytes"] / 1e9), 2),
        "sizing": {k: ready.get(k) for k in ("throughput_gbps", "gets_in_flight", "concurrency", "source")},
        "cap_mb_per_s": round(cap / 1e6, 1), "exact": True,
        "timeline": stats["timeline"], "bucket_s": stats["bucket_s"],
    }
out["ratio_default_over_seed"] = round(out["default"]["mb_per_s"] / out["seed"]["mb_per_s"], 2)
json.dump(out, sys.stdout)
PY
python3 - "$work/figures.json" <<'PY'
import json, sys
f = json.load(open(sys.argv[1]))
for name, label in (("default", "default config"), ("seed", "seed sizing (concurrency 4)")):
    r = f[name]
    s = r["sizing"]
    print(f"{label:30} {r['mb_per_s']:7.1f} MB/s = {r['pct_of_cap']:5.1f} % of the {r['cap_mb_per_s']} MB/s cap "
          f"over {r['window_s']} s; last 10 % of bytes at {r['tail_10pct_pct_of_cap']} %; "
          f"peak GETs {r['peak_gets_in_flight']} ({r['gets']} GETs, {r['splits']} splits); peak RSS {r['peak_rss_mib']} MiB; "
          f"{r['cpu_s_per_gb']} CPU s/GB; {r['jobs']} jobs exact; sized {s}")
print(f"default / seed: {f['ratio_default_over_seed']}x")
PY
if ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
    "$venv/bin/pip" install -q matplotlib
fi
"$venv/bin/python" bench/throughput_chart.py "$work/figures.json" "${CHART:-docs/throughput.png}"
cp "$work/figures.json" "${FIGURES:-/tmp/rangefleet-throughput.json}"
