#!/usr/bin/env bash
# Benchmark of migrating straight off a Xen host over SSH (see
# bench/README.md, "Over SSH"). Not run by CI: it needs minutes and
# gigabytes.
#
# Starts Debian's sshd on 127.0.0.1 (a stand-in Xen host: a generated RSA
# host key and client key, OpenSSH 4.3's algorithm set when LEGACY=1, the
# default), writes a sparse raw image (SIZE virtual, DATA of data, as
# bench/run.sh does) and a Xen HVM config naming it, then gets a local
# qcow2 of the disk three ways, in turn for ROUNDS rounds:
#   A  xen2kvm migrate ssh://root@127.0.0.1:PORT/benchvm -o OUT --no-boot-check
#      (the config over SFTP, the disk read over SFTP in concurrent
#      large reads, zero blocks dropped; the whole migration, not only
#      the disk copy)
#   B  the manual route: scp the image, then qemu-img convert -W -m 16
#   C  streaming: ssh HOST cat IMAGE into a sparse local file (dd
#      conv=sparse), then qemu-img convert -W -m 16 (qemu-img cannot
#      read a pipe: "requires /dev/stdin to be a regular file")
#   E  as A with --ssh-client openssh (the system's ssh -s HOST sftp)
#   F  as A with --ssh-compression (ssh -C)
#   G  as A with --host-zero-map auto: the read-only helper of --warm runs
#      on the host first and maps the all-zero 1 MiB blocks, which are
#      then never read over SSH
#   D  qemu-img convert -W -m 16 from qemu's own ssh block driver (libssh,
#      SFTP; authenticates through an ssh-agent started for the run; needs
#      Debian's qemu-block-extra; with LEGACY=1 it cannot connect: Debian
#      12's libssh offers no SHA-1 key exchange, and qemu gives no way to
#      enable one)
# Each run ends with sync and is timed to then; the first round's outputs
# are checked with qemu-img compare against the source.
#
# Environment: SIZE (8G), DATA (2G), ROUNDS (3), LEGACY (1), CBC (0; 1
# offers OpenSSH 4.3's CBC ciphers only, as runs before 2026-12-05 15:00
# UTC did, not its CTR ones too), ROUTES (the
# routes to run, by number: 0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G; default all), WORK
# (a new directory under /var/tmp, removed at the end unless KEEP=1).
set -euo pipefail

SIZE=${SIZE:-8G}
DATA=${DATA:-2G}
ROUNDS=${ROUNDS:-3}
LEGACY=${LEGACY:-1}
read -r -a routes <<<"${ROUTES:-0 1 2 3 4 5 6}"
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
WORK=${WORK:-$(mktemp -d /var/tmp/xen2kvm-bench-ssh.XXXXXX)}
mkdir -p "$WORK"
export PATH=/usr/local/go/bin:$PATH

for tool in qemu-img /usr/sbin/sshd ssh scp ssh-keygen ssh-agent go bc; do
	command -v "$tool" >/dev/null || { echo "bench: $tool is missing" >&2; exit 1; }
done

sshd_pid=
agent_pid=
cleanup() {
	[ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null || true
	[ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null || true
	if [ "${KEEP:-0}" != 1 ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

echo "bench: building xen2kvm" >&2
(cd "$root" && go build -o "$WORK/xen2kvm" ./cmd/xen2kvm)
echo "bench: writing a $SIZE sparse raw image with $DATA of data" >&2
mkdir -p "$WORK/host/images" "$WORK/host/etc-xen"
read -r allocated zeros < <(cd "$root" && go run ./bench/mkimage -o "$WORK/host/images/benchvm.img" -size "$SIZE" -data "$DATA")
src=$WORK/host/images/benchvm.img
cat >"$WORK/host/etc-xen/benchvm" <<CFG
name = "benchvm"
memory = 512
vcpus = 1
builder = "hvm"
kernel = "/usr/lib/xen/boot/hvmloader"
boot = "c"
disk = [ "file:$src,hda,w" ]
vif = [ "mac=00:16:3e:00:00:01,bridge=xenbr0" ]
CFG

ssh-keygen -q -t rsa -b 2048 -N '' -f "$WORK/host_rsa"
ssh-keygen -q -t rsa -b 2048 -N '' -f "$WORK/id_rsa"
cp "$WORK/id_rsa.pub" "$WORK/authorized_keys"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
{
	echo "Port $port"
	echo "ListenAddress 127.0.0.1"
	echo "HostKey $WORK/host_rsa"
	echo "PidFile $WORK/sshd.pid"
	echo "AuthorizedKeysFile $WORK/authorized_keys"
	echo "StrictModes no"
	echo "UsePAM no"
	echo "PasswordAuthentication no"
	echo "KbdInteractiveAuthentication no"
	echo "PermitRootLogin yes"
	echo "Subsystem sftp internal-sftp"
	if [ "$LEGACY" = 1 ]; then
		echo "KexAlgorithms diffie-hellman-group14-sha1,diffie-hellman-group1-sha1"
		echo "HostKeyAlgorithms ssh-rsa"
		echo "PubkeyAcceptedAlgorithms ssh-rsa"
		if [ "${CBC:-0}" = 1 ]; then
			echo "Ciphers aes128-cbc,3des-cbc,aes192-cbc,aes256-cbc"
		else
			echo "Ciphers aes128-cbc,3des-cbc,aes192-cbc,aes256-cbc,aes128-ctr,aes192-ctr,aes256-ctr"
		fi
		echo "MACs hmac-md5,hmac-sha1"
	fi
} >"$WORK/sshd_config"
[ -d /run/sshd ] || mkdir -p /run/sshd
/usr/sbin/sshd -D -e -f "$WORK/sshd_config" 2>"$WORK/sshd.log" &
sshd_pid=$!
for _ in $(seq 50); do
	ssh-keyscan -p "$port" 127.0.0.1 >/dev/null 2>&1 && break
	sleep 0.1
done
echo "[127.0.0.1]:$port $(cut -d' ' -f1-2 "$WORK/host_rsa.pub")" >"$WORK/known_hosts"
user=$(id -un)
sshopts=(-F /dev/null -i "$WORK/id_rsa" -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile="$WORK/known_hosts" -o StrictHostKeyChecking=yes)
if [ "$LEGACY" = 1 ]; then
	sshopts+=(-o KexAlgorithms=+diffie-hellman-group14-sha1 -o HostKeyAlgorithms=+ssh-rsa -o PubkeyAcceptedAlgorithms=ssh-rsa)
	[ "${CBC:-0}" = 1 ] && sshopts+=(-o Ciphers=aes128-cbc)
fi
eval "$(ssh-agent -s)" >/dev/null
agent_pid=$SSH_AGENT_PID
ssh-add -q "$WORK/id_rsa"
ssh "${sshopts[@]}" -p "$port" "$user@127.0.0.1" true
sync

load() { cut -d' ' -f1-3 /proc/loadavg; }
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$root" status --porcelain -- xenhost diskimg pipeline cmd bench ':!*.md' 2>/dev/null)" ]; then
	commit="$commit (with uncommitted changes)"
fi
load0=$(load)
ciphers="sshd defaults"
[ "$LEGACY" = 1 ] && ciphers="OpenSSH 4.3 set: group14-sha1, ssh-rsa, aes128-ctr, hmac-sha1"
[ "$LEGACY" = 1 ] && [ "${CBC:-0}" = 1 ] && ciphers="OpenSSH 4.3 set, CBC only: group14-sha1, ssh-rsa, aes128-cbc, hmac-sha1"
echo "bench: commit $commit, $(nproc) CPUs, load average at start: $load0; SSH: $ciphers" >&2

qemu_json="json:{\"driver\":\"raw\",\"file\":{\"driver\":\"ssh\",\"server\":{\"host\":\"127.0.0.1\",\"port\":\"$port\"},\"user\":\"$user\",\"path\":\"$src\",\"host-key-check\":{\"mode\":\"none\"}}}"
names=("xen2kvm migrate ssh://" "scp + qemu-img -W -m 16" "ssh cat + qemu-img -W" "qemu-img ssh driver" "xen2kvm --ssh-client openssh" "xen2kvm --ssh-compression" "xen2kvm --host-zero-map")
xen2kvm_migrate() {
	"$WORK/xen2kvm" migrate "ssh://$user@127.0.0.1:$port/benchvm" -o "$WORK/out" --no-boot-check --force \
		--identity "$WORK/id_rsa" --known-hosts "$WORK/known_hosts" --host-config-dir "$WORK/host/etc-xen" "$@" >/dev/null
	mv "$WORK/out/benchvm-hda.qcow2" "$WORK/out.qcow2" 2>/dev/null || mv "$WORK"/out/benchvm-*.qcow2 "$WORK/out.qcow2"
}
run_tool() {
	local out=$WORK/out.qcow2
	case $1 in
	0) xen2kvm_migrate ;;
	4) xen2kvm_migrate --ssh-client openssh ;;
	5) xen2kvm_migrate --ssh-compression ;;
	6) xen2kvm_migrate --host-zero-map auto ;;
	1)
		scp -q "${sshopts[@]}" -P "$port" "$user@127.0.0.1:$src" "$WORK/stage.raw"
		qemu-img convert -W -m 16 -f raw -O qcow2 "$WORK/stage.raw" "$out"
		;;
	2)
		ssh "${sshopts[@]}" -p "$port" "$user@127.0.0.1" cat "$src" | dd of="$WORK/stage.raw" bs=1M conv=sparse status=none
		qemu-img convert -W -m 16 -f raw -O qcow2 "$WORK/stage.raw" "$out"
		;;
	3)
		qemu-img convert -W -m 16 -O qcow2 "$qemu_json" "$out"
		;;
	esac
}
declare -A times
for round in $(seq 1 "$ROUNDS"); do
	n=${#routes[@]}
	for k in $(seq 0 $((n - 1))); do
		i=${routes[$(((k + round - 1) % n))]}
		rm -rf "$WORK/out.qcow2" "$WORK/out" "$WORK/stage.raw"
		sync
		start=$(date +%s.%N)
		if ! run_tool "$i" 2>"$WORK/stderr.txt"; then
			echo "bench: ${names[$i]} failed:" >&2
			cat "$WORK/stderr.txt" >&2
			times[$i]="${times[$i]:-} failed"
			continue
		fi
		sync
		end=$(date +%s.%N)
		t=$(echo "$end - $start" | bc -l)
		times[$i]="${times[$i]:-} $t"
		printf 'round %d  %-26s %8.2f s\n' "$round" "${names[$i]}" "$t"
		if [ "$round" = 1 ]; then
			qemu-img compare -q -f raw -F qcow2 "$src" "$WORK/out.qcow2" || { echo "bench: ${names[$i]} output differs from the source" >&2; exit 1; }
		fi
	done
done
rm -rf "$WORK/out.qcow2" "$WORK/out" "$WORK/stage.raw"

median() { tr ' ' '\n' | sed '/^$/d;/failed/d' | sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo
echo "commit $commit; load average (1, 5, 15 min) at start: $load0, at end: $(load); SSH: $ciphers"
echo "source: $SIZE virtual, $allocated bytes allocated ($zeros of them zeros), $ROUNDS rounds, medians, each until its output is synced"
ref=$(echo "${times[1]:-}" | median)
printf '%-26s %10s %14s %12s\n' route "time (s)" "MiB/s (alloc)" "vs manual"
for i in "${routes[@]}"; do
	t=$(echo "${times[$i]:-}" | median)
	if [ "$t" = nan ]; then
		printf '%-26s %10s\n' "${names[$i]}" failed
		continue
	fi
	printf '%-26s %10.2f %14.1f %12.2f\n' "${names[$i]}" "$t" "$(echo "$allocated/1048576/$t" | bc -l)" "$(echo "$t/$ref" | bc -l)"
done
echo "(vs manual: time relative to scp + qemu-img convert -W -m 16; below 0.5 meets the issue's goal)"
