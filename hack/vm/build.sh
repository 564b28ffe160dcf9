#!/usr/bin/env bash
# Builds the Debian 12 test VM image that hack/vm/run.sh boots: systemd as PID 1 on a pure cgroup2
# mount, which a cgroup v1 build host cannot become. The image is built once into $VM_CACHE, keyed
# by a hash of the recipe (this script and the files of hack/vm/guest/), so it is rebuilt only when
# the recipe changes. Prints the image directory (disk.raw, vmlinuz, initrd.img) on stdout.
# Needs root (debootstrap, and the image must hold root-owned files); no loop device or KVM needed.
set -euo pipefail

VM_CACHE=${VM_CACHE:-/var/cache/berth/vm}
VM_MIRROR=${VM_MIRROR:-http://deb.debian.org/debian}
# Free space left in the root filesystem for what tests unpack inside (images, snapshots, logs).
VM_DISK_HEADROOM_MB=${VM_DISK_HEADROOM_MB:-3072}

here=$(cd "$(dirname "$0")" && pwd)
log() { echo "vm-image: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
	echo "vm-image: must run as root (apt-get, debootstrap, root-owned files in the image)" >&2
	exit 1
fi

# Host tools: qemu (the VM), qemu-utils (qemu-img for per-run overlays), debootstrap (the guest's
# root filesystem), e2fsprogs (mkfs.ext4 -d turns a folder into an image without a loop device).
host_packages=(qemu-system-x86 qemu-utils debootstrap e2fsprogs debian-archive-keyring)
missing=()
for p in "${host_packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The guest: systemd and the kernel, plus what berth and its tests use at run time (no Go: test
# binaries are compiled on the host and come in through the 9p share). apparmor brings
# apparmor_parser, with which berth loads its RuntimeDefault profile (Debian's kernel enables
# AppArmor by default, as on the nodes berth runs on).
guest_packages=(
	systemd systemd-sysv udev dbus linux-image-amd64 initramfs-tools kmod
	iproute2 nftables iptables uidmap busybox ca-certificates libseccomp2 procps apparmor
)

# The key covers everything that ends up in the image; the package list lives in this file.
key=$(cat "$0" "$here"/guest/* | sha256sum | cut -c1-16)
image=$VM_CACHE/image-$key
if [ -e "$image/ready" ]; then
	echo "$image"
	exit 0
fi

mkdir -p "$VM_CACHE"
# One build at a time: a second caller waits, then finds the image ready.
exec 9>"$VM_CACHE/lock"
flock 9
if [ -e "$image/ready" ]; then
	echo "$image"
	exit 0
fi
work=$(mktemp -d "$VM_CACHE/build.XXXXXX")
root=$work/root
# A failed debootstrap can leave proc/sys mounted inside the target; unmount everything under the
# work directory (deepest first) before removing it, so a failed build leaves nothing behind.
cleanup() {
	local m
	for m in $(findmnt -rn -o TARGET | grep -F "$work/" | sort -r); do
		umount -l "$m" || true
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# configure_guest makes the root filesystem boot straight into the test unit: a fixed identity (an
# empty machine-id would make systemd treat every boot as a first boot and prompt on the console),
# no getty (nothing logs in: the unit runs the command and powers off), no periodic jobs.
configure_guest() {
	local r=$1
	echo berth-vm >"$r/etc/hostname"
	printf '127.0.0.1 localhost\n127.0.1.1 berth-vm\n::1 localhost\n' >"$r/etc/hosts"
	od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$r/etc/machine-id"
	echo >>"$r/etc/machine-id"
	printf '/dev/vda / ext4 defaults 0 0\n' >"$r/etc/fstab"
	install -m 0644 "$here/guest/berth-vm-test.service" "$r/etc/systemd/system/"
	install -m 0755 "$here/guest/berth-vm-test" "$r/usr/local/sbin/"
	install -m 0644 "$here/guest/modules-9p.conf" "$r/etc/modules-load.d/9p.conf"
	systemctl --root="$r" enable berth-vm-test.service
	systemctl --root="$r" mask serial-getty@ttyS0.service getty@tty1.service systemd-firstboot.service \
		apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer
	# A small initrd boots much faster under TCG than Debian's MODULES=most one (36 MB): the
	# root disk only needs virtio and ext4.
	printf 'MODULES=list\n' >"$r/etc/initramfs-tools/conf.d/berth-vm.conf"
	printf 'virtio_pci\nvirtio_blk\next4\n' >>"$r/etc/initramfs-tools/modules"
	mount -t proc proc "$r/proc"
	chroot "$r" update-initramfs -u -k all
	umount "$r/proc"
	rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/* "$r/debootstrap"
}

start=$(date +%s)
log "debootstrap bookworm into $root (takes a few minutes)"
include=$(IFS=,; echo "${guest_packages[*]}")
if ! debootstrap --variant=minbase --include="$include" bookworm "$root" "$VM_MIRROR" >"$work/debootstrap.log" 2>&1; then
	tail -n 30 "$work/debootstrap.log" >&2
	if [ -f "$root/debootstrap/debootstrap.log" ]; then tail -n 30 "$root/debootstrap/debootstrap.log" >&2; fi
	echo "vm-image: debootstrap failed" >&2
	exit 1
fi
configure_guest "$root"

out=$work/image
mkdir "$out"
# The guest boots its own kernel and initrd (qemu -kernel/-initrd): no bootloader in the image.
vmlinuz=$(find "$root/boot" -name 'vmlinuz-*' | sort | tail -n 1)
initrd=$(find "$root/boot" -name 'initrd.img-*' | sort | tail -n 1)
if [ -z "$vmlinuz" ] || [ -z "$initrd" ]; then
	echo "vm-image: no kernel or initrd under $root/boot" >&2
	exit 1
fi
cp "$vmlinuz" "$out/vmlinuz"
cp "$initrd" "$out/initrd.img"

used_mb=$(du -sm "$root" | cut -f1)
size_mb=$((used_mb + VM_DISK_HEADROOM_MB))
log "mkfs.ext4 -d: ${used_mb} MB of files in a ${size_mb} MB (sparse) disk"
truncate -s "${size_mb}M" "$out/disk.raw"
mkfs.ext4 -q -F -L berth-vm -d "$root" "$out/disk.raw"
# Runs boot copy-on-write overlays of the cached disk; it is never written again.
chmod 0444 "$out/disk.raw"
touch "$out/ready"
mv "$out" "$image"

# Older recipes' images are dead weight (a few hundred MB each).
for old in "$VM_CACHE"/image-*; do
	if [ "$old" != "$image" ]; then rm -rf "$old"; fi
done
log "built $image in $(($(date +%s) - start)) s"
echo "$image"
