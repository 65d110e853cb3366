#!/usr/bin/env bash
# How long `rangefleet identity` takes against a local IMDS (imds-mock) serving a
# gzipped #cloud-config: token PUT, nine GETs, user-data decoding, validation.
# The goal is a median under 20 ms. Prints hyperfine's table and the median.
#
#   bench/identity.sh            # release build; RUNS=200 by default
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rangefleet/target}"
command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null; }
cargo build --release -q -p rangefleet
bin="$CARGO_TARGET_DIR/release/rangefleet"
work="$(mktemp -d)"
trap 'kill "${mock_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

cat >"$work/user-data" <<'YAML'
#cloud-config
write_files:
  - path: /etc/rangefleet/agent.yaml
    content: |
      queue: https://sqs.us-east-1.amazonaws.com/123456789012/trips-jobs
      inputs: ["s3://trips-data/trips/"]
      results: s3://trips-data/results/run-42/
      tags:
        team: data
        Name: worker-{instance_id}
YAML
gzip -9 "$work/user-data"
"$bin" imds-mock --userdata "$work/user-data.gz" --tag env=bench --log-format text >"$work/url" 2>/dev/null &
mock_pid=$!
for _ in $(seq 50); do [ -s "$work/url" ] && break; sleep 0.1; done
url="$(head -1 "$work/url")"

AWS_EC2_METADATA_SERVICE_ENDPOINT="$url" hyperfine --warmup 10 --runs "${RUNS:-200}" -N \
    --export-json "$work/identity.json" "$bin identity"
python3 - "$work/identity.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print(f"identity median: {r['median']*1000:.2f} ms (mean {r['mean']*1000:.2f} ms, "
      f"min {r['min']*1000:.2f} ms, max {r['max']*1000:.2f} ms, {len(r['times'])} runs)")
PY
