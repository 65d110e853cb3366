#!/bin/bash
# PID 1 of the harness's container until it execs systemd. tests/systemd/harness/
# container.py runs it inside new PID, mount, UTS, IPC and cgroup namespaces (the
# network namespace is the host's, so the agent reaches imds-mock on 127.0.0.1):
#
#   boot-container.sh LOWER RUN
#
# LOWER is the cached Debian root (read-only: an overlay keeps every write in
# RUN/upper), RUN the drill's scratch directory; RUN/shared appears in the
# container as /srv/rangefleet. Everything mounted here lives in the new mount
# namespace only and goes away with it.
set -euo pipefail

lower="$1"
run="$2"
root="$run/root"

mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$run/upper,workdir=$run/work" "$root"

# /proc of the new PID namespace; the kernel's knobs read-only, as systemd-nspawn
# does, so nothing in the container changes the host's sysctls.
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount --bind "$root/proc/sys" "$root/proc/sys"
mount -o remount,bind,ro "$root/proc/sys"
if [ -e "$root/proc/sysrq-trigger" ]; then
	mount --bind /dev/null "$root/proc/sysrq-trigger"
fi
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
# The cgroup namespace's root is the cgroup the harness made for this container.
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$root/sys/fs/cgroup"

# A minimal /dev: the usual character devices, a private devpts, /dev/shm.
mount -t tmpfs -o mode=755,nosuid,size=4m tmpfs "$root/dev"
for node in null zero full random urandom tty; do
	touch "$root/dev/$node"
	mount --bind "/dev/$node" "$root/dev/$node"
done
mkdir -p "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"

# The drill's queue, data and results, shared with the harness.
mkdir -p "$root/srv/rangefleet"
mount --bind "$run/shared" "$root/srv/rangefleet"

# Leave the host's file system behind.
cd "$root"
mkdir -p .host
pivot_root . .host
umount -l /.host
rmdir /.host

export container=rangefleet-harness
exec /lib/systemd/systemd
