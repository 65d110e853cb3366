#!/usr/bin/env bash
# Soak (not in CI): 20,000 jobs through 4 agents, with spot interruptions, then an
# exact reduce. Records per-agent completion times from the agents' JSON logs ("job
# done" events), the interruptions, peak RSS per agent (/usr/bin/time -v) and jobs per
# second; bench/soak_chart.py draws jobs completed over time per agent, interruptions
# marked, to docs/soak.png.
#
#   bench/soak.sh                   # SQLite queue + file:// data (the default)
#   MODE=moto bench/soak.sh         # SQS + S3 on a local moto server (much slower)
#   JOBS_PER_PARTITION=1000 PARTITIONS_DAYS=2016-01-01..2016-01-10 bench/soak.sh
#
# Every agent boots from its own `rangefleet imds-mock` (user-data = the agent config),
# as on EC2. Agents 1 and 3 get a spot interruption notice (INTERRUPT_1, INTERRUPT_3,
# default 3s and 6s after they start, 30s and 60s on moto); each is replaced by a new instance once it has
# drained, as the auto-scaling group would. Output goes to $OUT (default a fresh
# temporary folder): logs/, time/, soak.json, and the chart.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rangefleet/target}"
venv="${RANGEFLEET_VENV:-$HOME/.cache/rangefleet/venv}"
mode="${MODE:-sqlite}"
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
cargo build --release -q -p rangefleet
bin="$CARGO_TARGET_DIR/release/rangefleet"

out="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/rangefleet-soak.XXXXXX")}"
mkdir -p "$out/logs" "$out/time"
days="${PARTITIONS_DAYS:-2016-01-01..2016-01-10}" # 10 days x 2 colours = 20 partitions
per_job=100
jobs_per_partition="${JOBS_PER_PARTITION:-1000}" # 20 x 1,000 = 20,000 jobs
records=$((jobs_per_partition * per_job))
concurrency="${CONCURRENCY:-2}"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

echo "soak: mode $mode, output in $out"
"$bin" gen --out "$out/data" --colors yellow,green --days "$days" --records "$records" \
    --seed 11 --bad-every 101 2>/dev/null
mv "$out/data/_expected.json" "$out/expected.json"

env_common=(RANGEFLEET_LOG_FORMAT=json)
if [ "$mode" = moto ]; then
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$out/moto.log" 2>&1 &
    pids+=($!)
    endpoint="http://127.0.0.1:$port"
    until curl -fs "$endpoint" >/dev/null 2>&1 || curl -s -o /dev/null -w '%{http_code}' "$endpoint" | grep -q '[1-5]'; do sleep 0.2; done
    export AWS_ENDPOINT_URL="$endpoint" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
    "$venv/bin/python" - "$endpoint" "$out/data" <<'PY'
import os, sys, boto3
ep, data = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-east-1")
s3.create_bucket(Bucket="soak")
for root, _, files in os.walk(data):
    for f in files:
        p = os.path.join(root, f)
        s3.upload_file(p, "soak", "trips/" + os.path.relpath(p, data))
sqs = boto3.client("sqs", endpoint_url=ep, region_name="us-east-1")
dlq = sqs.create_queue(QueueName="soak-dlq")["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
sqs.create_queue(QueueName="soak", Attributes={"RedrivePolicy":
    '{"deadLetterTargetArn": "%s", "maxReceiveCount": "20"}' % arn})
PY
    queue="$endpoint/123456789012/soak"
    source="s3://soak/trips/"
    results="s3://soak/results/soak/"
else
    queue="sqlite://$out/queue.db"
    source="file://$out/data/"
    results="file://$out/results/"
fi

# Notices early enough to land mid-run: SQLite + files does 20,000 jobs in about 15 s
# on 2 cores, moto takes minutes.
if [ "$mode" = moto ]; then int1=30s int3=60s; else int1=3s int3=6s; fi

started="$(date +%s.%N)"
"$bin" plan "$source" --queue "$queue" --results "$results" --processor taxi-stats \
    --records-per-job "$per_job" 2>"$out/plan.log"

cat >"$out/agent.yaml" <<EOF
queue: $queue
inputs: ["$source"]
results: $results
concurrency: $concurrency
lease_seconds: 30
tags: {Name: "worker-{instance_id}", team: soak}
spot: {poll_seconds: 1}
EOF

# start_agent NAME [imds-mock args…]: an imds-mock for instance i-soak-NAME, then the agent.
start_agent() {
    local name="$1"
    shift
    local id="i-soak-$name"
    "$bin" imds-mock --userdata "$out/agent.yaml" --instance-id "$id" --role worker "$@" \
        >"$out/logs/$id.imds-url" 2>/dev/null &
    pids+=($!)
    until [ -s "$out/logs/$id.imds-url" ]; do sleep 0.05; done
    env "${env_common[@]}" AWS_EC2_METADATA_SERVICE_ENDPOINT="$(head -1 "$out/logs/$id.imds-url")" \
        /usr/bin/time -v -o "$out/time/$id.txt" \
        "$bin" agent --until-empty 2>"$out/logs/$id.log" &
    agent_pid=$!
    pids+=($agent_pid)
}

start_agent 1 --interrupt-after "${INTERRUPT_1:-$int1}"
a1=$agent_pid
start_agent 2
a2=$agent_pid
start_agent 3 --interrupt-after "${INTERRUPT_3:-$int3}"
a3=$agent_pid
start_agent 4
a4=$agent_pid
# The interrupted instances are replaced once they have drained (the ASG's job).
wait "$a1" || true
start_agent 1b
a1b=$agent_pid
wait "$a3" || true
start_agent 3b
a3b=$agent_pid
for p in "$a2" "$a4" "$a1b" "$a3b"; do wait "$p" || true; done
finished="$(date +%s.%N)"

"$bin" reduce --results "$results" --json >"$out/reduce.json" || true
python3 - "$out" "$started" "$finished" "$mode" <<'PY'
import glob, json, os, re, sys
out, started, finished, mode = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
reduced = json.load(open(f"{out}/reduce.json"))
planned = reduced["coverage"]["planned"]
expected = json.load(open(f"{out}/expected.json"))
cov = reduced["coverage"]
exact = reduced["total"] == expected["total"] and not cov["missing"] and cov["done"] == planned
agents = {}
for t in sorted(glob.glob(f"{out}/time/*.txt")):
    iid = os.path.basename(t)[:-4]
    text = open(t).read()
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    done = interrupted = 0
    for line in open(f"{out}/logs/{iid}.log"):
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        msg = ev.get("fields", {}).get("message")
        done += msg == "job done"
        interrupted += msg == "spot interruption notice: draining"
    agents[iid] = {"peak_rss_mib": round(rss / 1024, 1), "jobs_done": done, "interrupted": bool(interrupted)}
wall = finished - started
summary = {"mode": mode, "planned": planned, "done": cov["done"], "redone": cov["redone"],
           "exact": exact, "wall_seconds": round(wall, 1), "jobs_per_second": round(planned / wall, 1),
           "agents": agents}
json.dump(summary, open(f"{out}/soak.json", "w"), indent=2)
print(json.dumps(summary, indent=2))
if not exact:
    sys.exit("soak: reduce is NOT exact or complete")
PY

if ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
    "$venv/bin/pip" install -q matplotlib
fi
"$venv/bin/python" bench/soak_chart.py "$out/logs" "${CHART:-docs/soak.png}"
echo "soak: chart in ${CHART:-docs/soak.png}; figures in $out/soak.json"
