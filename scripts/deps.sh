# Sourced by scripts/test and scripts/demo: installs the Debian packages
# xen2kvm's tests and demo use. Runs apt-get only for what is missing.

# Packages: QEMU and qemu-img (launcher, image oracle), libvirt-clients
# (virt-xml-validate), e2fsprogs (mke2fs -d, e2fsck, debugfs), lvm2 (real
# LVM volumes for the disk engine's tests), busybox-static and the Debian
# kernel (the example guest's userland and kernel), cpio/fdisk (fixtures),
# chromium (renders the HTML dry-run report in a test), libvirt-daemon and
# libvirt-daemon-driver-qemu (libvirtd with its storage and QEMU drivers:
# the tests start a private one, never the system daemon, to deliver
# migrate --to into; virsh from libvirt-clients is their oracle).
XEN2KVM_DEBS=(qemu-system-x86 qemu-utils libvirt-clients libvirt-daemon libvirt-daemon-driver-qemu libxml2-utils e2fsprogs lvm2 busybox-static cpio fdisk xz-utils zstd chromium ca-certificates git time bc dracut-core kmod)
# Windows guests (issue 15): mkntfs, ntfs-3g (FUSE) and the ntfs* tools build
# and check the NTFS fixtures; hivexregedit (Perl) writes and exports hives,
# hivexget reads them back.
# virtio-win staging: mtools and dosfstools (fsck.fat) read back the FAT
# first-boot disk, genisoimage makes a virtio-win-like ISO.
XEN2KVM_DEBS+=(ntfs-3g libhivex-bin libwin-hivex-perl mtools dosfstools genisoimage)
# openssh-server (internal/testsshd runs its sshd as a stand-in Xen host for
# the ssh:// source tests) and openssh-client (the fixture's Exec, bench/ssh.sh).
XEN2KVM_DEBS+=(openssh-server openssh-client)

install_deps() {
	local missing=()
	for p in "${XEN2KVM_DEBS[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	if ! command -v go >/dev/null 2>&1; then
		if [ -x /usr/local/go/bin/go ]; then
			export PATH=/usr/local/go/bin:$PATH
		else
			missing+=(golang-go)
		fi
	fi
	[ ${#missing[@]} -eq 0 ] && return 0
	local sudo=()
	[ "$(id -u)" -eq 0 ] || sudo=(sudo)
	echo "xen2kvm: installing ${missing[*]}" >&2
	"${sudo[@]}" apt-get update -qq
	# openssh-server and libvirt's daemon are installed for the tests, which
	# start private instances of their own: keep the packages from starting
	# system services (policy-rc.d 101), unless the machine already has a
	# policy of its own.
	local policy=/usr/sbin/policy-rc.d own_policy=
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
		"${sudo[@]}" chmod 755 "$policy"
		own_policy=1
	fi
	local rc=0
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
	[ -z "$own_policy" ] || "${sudo[@]}" rm -f "$policy"
	return $rc
}

# python3: warm migration's block-hash helper (xenhost.HashBlocks) runs
# under python on the Xen host (RHEL 5's 2.4); on the stand-in host of the
# tests that is Debian's python3 (its dd+md5sum fallback needs coreutils).
XEN2KVM_DEBS+=(python3)
