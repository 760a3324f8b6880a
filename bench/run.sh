#!/usr/bin/env bash
# Benchmark of xen2kvm's disk copy against qemu-img (see bench/README.md).
#
# Builds a sparse raw image (default 8 GiB virtual, 2 GiB of scattered data,
# a quarter of it zeros written to disk) and converts it to qcow2 with
#   A  xen2kvm disk convert SRC DST
#   B  qemu-img convert -O qcow2 SRC DST
#   C  qemu-img convert -W -m 16 -O qcow2 SRC DST
# alternating them for ROUNDS rounds (round r starts with the r-th tool,
# wrapping around). Each run is timed with GNU time (peak RSS) and the wall
# clock. xen2kvm fsyncs its output before renaming
# it; qemu-img convert's default cache mode (unsafe) does not flush, so
# `sync` runs right after each command and the table shows both the
# command's own wall time and the time until its output is on disk
# ("durable"). The first round's outputs are checked with qemu-img compare
# and qemu-img check.
#
# Environment: SIZE (8G), DATA (2G), ROUNDS (5), WORK (a new directory under
# /var/tmp, removed at the end unless KEEP=1).
set -euo pipefail

SIZE=${SIZE:-8G}
DATA=${DATA:-2G}
ROUNDS=${ROUNDS:-5}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
WORK=${WORK:-$(mktemp -d /var/tmp/xen2kvm-bench.XXXXXX)}
mkdir -p "$WORK"
if [ "${KEEP:-0}" != 1 ]; then
	trap 'rm -rf "$WORK"' EXIT
fi
export PATH=/usr/local/go/bin:$PATH

for tool in qemu-img /usr/bin/time go bc; do
	command -v "$tool" >/dev/null || { echo "bench: $tool is missing (scripts/deps.sh installs it)" >&2; exit 1; }
done

echo "bench: building xen2kvm" >&2
(cd "$root" && go build -o "$WORK/xen2kvm" ./cmd/xen2kvm)
echo "bench: writing a $SIZE sparse raw image with $DATA of data" >&2
read -r allocated zeros < <(cd "$root" && go run ./bench/mkimage -o "$WORK/src.raw" -size "$SIZE" -data "$DATA")
sync

load() { cut -d' ' -f1-3 /proc/loadavg; }
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$root" status --porcelain -- diskimg cmd bench ':!*.md' 2>/dev/null)" ]; then
	commit="$commit (with uncommitted changes)"
fi
load0=$(load)
echo "bench: commit $commit, $(nproc) CPUs, load average at start: $load0" >&2

names=("xen2kvm" "qemu-img" "qemu-img -W -m 16")
cmds=(
	"$WORK/xen2kvm disk convert $WORK/src.raw $WORK/out.qcow2"
	"qemu-img convert -O qcow2 $WORK/src.raw $WORK/out.qcow2"
	"qemu-img convert -W -m 16 -O qcow2 $WORK/src.raw $WORK/out.qcow2"
)
declare -A walls durables rsss

for round in $(seq 1 "$ROUNDS"); do
	# Each round starts with the next tool, so whatever the first run
	# after writing the image pays is not always paid by the same tool.
	for k in 0 1 2; do
		i=$(((k + round - 1) % 3))
		rm -f "$WORK/out.qcow2"
		sync
		start=$(date +%s.%N)
		/usr/bin/time -v -o "$WORK/time.txt" ${cmds[$i]} >/dev/null 2>"$WORK/stderr.txt" || {
			echo "bench: ${names[$i]} failed:" >&2
			cat "$WORK/stderr.txt" >&2
			exit 1
		}
		mid=$(date +%s.%N)
		sync
		end=$(date +%s.%N)
		wall=$(echo "$mid - $start" | bc -l)
		durable=$(echo "$end - $start" | bc -l)
		rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")
		walls[$i]="${walls[$i]:-} $wall"
		durables[$i]="${durables[$i]:-} $durable"
		rsss[$i]="${rsss[$i]:-} $rss"
		printf 'round %d  %-18s  %7.2f s (durable %7.2f s)  %7.1f MiB RSS\n' "$round" "${names[$i]}" "$wall" "$durable" "$(echo "$rss/1024" | bc -l)"
		if [ "$round" = 1 ]; then
			qemu-img compare -q -f raw -F qcow2 "$WORK/src.raw" "$WORK/out.qcow2" || { echo "bench: ${names[$i]} output differs" >&2; exit 1; }
			qemu-img check -q "$WORK/out.qcow2" || { echo "bench: ${names[$i]} output fails qemu-img check" >&2; exit 1; }
		fi
	done
done
rm -f "$WORK/out.qcow2"

median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
maxof() { tr ' ' '\n' | sed '/^$/d' | sort -g | tail -1; }

echo
echo "commit $commit; load average (1, 5, 15 min) at start: $load0, at end: $(load)"
echo "source: $SIZE virtual, $allocated bytes allocated ($zeros of them zeros), $ROUNDS rounds, medians"
printf '%-18s %9s %11s %11s %13s %10s %11s %10s\n' tool "wall (s)" "MiB/s" "durable (s)" "MiB/s durable" "peak RSS" "wall ratio" "durable r."
ref_wall=$(echo "${walls[2]}" | median)
ref_dur=$(echo "${durables[2]}" | median)
for i in 0 1 2; do
	w=$(echo "${walls[$i]}" | median)
	d=$(echo "${durables[$i]}" | median)
	r=$(echo "${rsss[$i]}" | maxof)
	printf '%-18s %9.2f %11.1f %11.2f %13.1f %6.1f MiB %10.2f %10.2f\n' "${names[$i]}" "$w" \
		"$(echo "$allocated/1048576/$w" | bc -l)" "$d" "$(echo "$allocated/1048576/$d" | bc -l)" \
		"$(echo "$r/1024" | bc -l)" "$(echo "$w/$ref_wall" | bc -l)" "$(echo "$d/$ref_dur" | bc -l)"
done
echo "(MiB/s on allocated source bytes; ratios relative to qemu-img -W -m 16, below 1 is faster)"
