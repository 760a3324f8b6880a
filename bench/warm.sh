#!/usr/bin/env bash
# Benchmark of warm migration (see bench/README.md, "Warm migration"):
# the downtime of xen2kvm migrate --warm --shutdown-source against a cold
# migration of the same final image, side by side in one run, from the
# stand-in Xen host of internal/testsshd (Debian's sshd on 127.0.0.1 with
# OpenSSH 4.3's algorithms and a stand-in xm). Not run by CI (build tag
# bench): it needs minutes and gigabytes.
#
# Environment: SIZE (4G virtual), DATA (2G of data, as bench/run.sh),
# CHANGE (0.02: the share of 1 MiB blocks the guest rewrites after pass 1
# and before it stops), WORK (a folder to keep the files in; default a
# temporary one, removed), TIMELINE=1 (print the warm run's log from the
# guest's stop on, timed: where the downtime goes), LINK (megabits per
# second: both runs reach the host through a relay that moves at most
# that much each way, as over a network link; default none, loopback).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PATH=/usr/local/go/bin:$PATH
cd "$here/warm"
exec go test -tags bench -run TestWarmDowntime -count=1 -v -timeout 2h .
