#!/bin/bash
# rangefleet-install: download the rangefleet binary, check its sha256 and
# install it, then install the agent's systemd unit and journal catalog and
# start the unit.
#
# cloud-init writes this file to /usr/local/sbin/rangefleet-install and runs it
# from runcmd. It fails closed: on any download or checksum failure nothing is
# installed, the reason goes to stderr (cloud-init-output.log, the serial
# console) and the journal, and the instance powers off (unless --no-start).
#
# usage: rangefleet-install --url URL --sha256 HEX [--dest PATH]
#            [--unit-src FILE] [--unit-dir DIR] [--catalog-src FILE]
#            [--catalog-dir DIR] [--attempts N] [--no-start]
#
#   --url       https://... (curl) or s3://bucket/key (aws CLI, instance role).
#               http:// is accepted too: the sha256 pins the bytes either way.
#   --catalog-src  the journal catalog (what each MESSAGE_ID means), installed
#               into --catalog-dir (/usr/lib/systemd/catalog) as rangefleet.catalog.
#   --no-start  install files only; skip journalctl --update-catalog,
#               daemon-reload and enable --now (also RANGEFLEET_INSTALL_NO_START=1).
#               Used by tests.
# rangefleet-agent-failed.service is installed from --unit-src's folder.
#
# Environment: RANGEFLEET_INSTALL_BACKOFF_BASE (seconds, default 2) and
# RANGEFLEET_INSTALL_BACKOFF_MAX (default 30) shape the retry delays.
set -euo pipefail

prog=rangefleet-install
url=""
sha256=""
dest=/usr/local/bin/rangefleet
unit_src=/usr/local/share/rangefleet/rangefleet-agent.service
unit_dir=/etc/systemd/system
unit_name=rangefleet-agent.service
catalog_src=/usr/local/share/rangefleet/rangefleet.catalog
catalog_dir=/usr/lib/systemd/catalog
attempts=8
no_start="${RANGEFLEET_INSTALL_NO_START:-0}"
backoff_base="${RANGEFLEET_INSTALL_BACKOFF_BASE:-2}"
backoff_max="${RANGEFLEET_INSTALL_BACKOFF_MAX:-30}"

log() {
	printf '%s: %s\n' "$prog" "$*" >&2
	# Also to the journal when there is one, so `journalctl -t
	# rangefleet-install` finds it after cloud-init's log has rotated.
	if [ -S /dev/log ] && command -v logger >/dev/null 2>&1; then
		logger -t "$prog" -- "$*" 2>/dev/null || true
	fi
}

die() {
	log "error: $*"
	if [ "$no_start" != 1 ]; then
		log "powering off: the group replaces this instance"
		systemctl poweroff --no-block || log "power-off failed"
	fi
	exit 1
}

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case "$1" in
	--url) url="${2:?--url needs a value}"; shift 2 ;;
	--sha256) sha256="${2:?--sha256 needs a value}"; shift 2 ;;
	--dest) dest="${2:?--dest needs a value}"; shift 2 ;;
	--unit-src) unit_src="${2:?--unit-src needs a value}"; shift 2 ;;
	--unit-dir) unit_dir="${2:?--unit-dir needs a value}"; shift 2 ;;
	--catalog-src) catalog_src="${2:?--catalog-src needs a value}"; shift 2 ;;
	--catalog-dir) catalog_dir="${2:?--catalog-dir needs a value}"; shift 2 ;;
	--attempts) attempts="${2:?--attempts needs a value}"; shift 2 ;;
	--no-start) no_start=1; shift ;;
	-h | --help) usage ;;
	*) log "unknown argument: $1"; usage ;;
	esac
done

[ -n "$url" ] || die "--url is required"
[ -n "$sha256" ] || die "--sha256 is required"
sha256="$(printf '%s' "$sha256" | tr 'A-F' 'a-f')"
[[ "$sha256" =~ ^[0-9a-f]{64}$ ]] || die "--sha256 must be 64 hex characters"
[[ "$attempts" =~ ^[1-9][0-9]*$ ]] || die "--attempts must be a positive integer"

case "$url" in
https://* | http://*)
	command -v curl >/dev/null 2>&1 || die "curl not found; cannot fetch $url"
	;;
s3://*)
	command -v aws >/dev/null 2>&1 || die "aws CLI not found; cannot fetch $url"
	;;
*) die "unsupported URL scheme (want https:// or s3://): $url" ;;
esac

# One download attempt into $1. curl's own retries are off: the loop below
# owns retrying so https and s3 back off the same way.
fetch_once() {
	case "$url" in
	s3://*) aws s3 cp --only-show-errors "$url" "$1" ;;
	*) curl --fail --silent --show-error --location --proto '=https,http' \
		--connect-timeout 10 --max-time 300 --output "$1" "$url" ;;
	esac
}

# Checked before downloading so a broken image installs nothing at all.
[ -f "$unit_src" ] || die "unit file $unit_src not found; nothing installed"
failed_unit_src="$(dirname -- "$unit_src")/rangefleet-agent-failed.service"
[ -f "$failed_unit_src" ] || die "unit file $failed_unit_src not found; nothing installed"
[ -f "$catalog_src" ] || die "journal catalog $catalog_src not found; nothing installed"

dest_dir="$(dirname -- "$dest")"
mkdir -p -- "$dest_dir"
# The temporary file sits next to the destination so the final mv is atomic.
tmp="$(mktemp "$dest_dir/.rangefleet-download.XXXXXX")"
trap 'rm -f -- "$tmp"' EXIT

attempt=1
delay="$backoff_base"
while :; do
	if fetch_once "$tmp"; then
		break
	fi
	if [ "$attempt" -ge "$attempts" ]; then
		die "download of $url failed after $attempt attempts; nothing installed"
	fi
	# Full jitter: sleep a random time in [delay/2, delay].
	sleep_for=$((delay / 2 + RANDOM % (delay / 2 + 1)))
	log "download of $url failed (attempt $attempt/$attempts); retrying in ${sleep_for}s"
	sleep "$sleep_for"
	attempt=$((attempt + 1))
	delay=$((delay * 2))
	[ "$delay" -le "$backoff_max" ] || delay="$backoff_max"
done

actual="$(sha256sum -- "$tmp" | cut -d' ' -f1)"
if [ "$actual" != "$sha256" ]; then
	die "sha256 mismatch for $url: expected $sha256, got $actual; nothing installed"
fi

chmod 0755 -- "$tmp"
mv -f -- "$tmp" "$dest"
trap - EXIT
log "installed $dest (sha256 $actual, $(wc -c <"$dest") bytes) from $url"

mkdir -p -- "$unit_dir"
install -m 0644 -- "$failed_unit_src" "$unit_dir"/
install -m 0644 -- "$unit_src" "$unit_dir/$unit_name"
log "installed $unit_dir/$unit_name and its OnFailure= unit"

mkdir -p -- "$catalog_dir"
install -m 0644 -- "$catalog_src" "$catalog_dir/rangefleet.catalog"
log "installed $catalog_dir/rangefleet.catalog"

if [ "$no_start" = 1 ]; then
	log "--no-start: not updating the journal catalog, not enabling $unit_name"
	exit 0
fi

# A catalog that does not build costs `journalctl -x` its explanations, not
# the agent its start: say so and go on.
if journalctl --update-catalog; then
	log "updated the journal catalog (journalctl -x explains the agent's events)"
else
	log "warning: journalctl --update-catalog failed; journalctl -x will lack the agent's explanations"
fi

systemctl daemon-reload
# --no-block: runcmd runs inside cloud-final.service; waiting here for a
# Type=notify unit ordered after network-online.target can deadlock boot.
systemctl enable --now --no-block "$unit_name"
log "enabled and queued start of $unit_name"
