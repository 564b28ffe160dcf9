#!/usr/bin/env bash
# Fails when tests left kernel objects or processes behind: berth mounts,
# pinned network namespaces, berth processes, berth cgroups, veths.
# A test that leaks is a failing test.
set -u
leaks=0
report() { echo "leak: $*" >&2; leaks=1; }

while read -r mnt; do report "mount $mnt"; done < <(awk '$5 ~ /berth/ || $5 ~ /^\/(var\/)?run\/netns\/./ {print $5}' /proc/self/mountinfo)
if ls -A /var/run/netns 2>/dev/null | grep -q .; then report "network namespaces: $(ls /var/run/netns | tr '\n' ' ')"; fi
# Exited shims are reparented to PID 1, which on some nodes reaps them only
# later: a zombie has released everything but its pid, so it is not a leak.
running_berth() {
	pgrep -a -f 'berth' | grep -v -e check-leaks -e pgrep -e 'make ' -e 'go test' -e '\.test ' |
		while read -r pid rest; do
			[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] || echo "$pid $rest"
		done
}
while read -r p; do report "process $p"; done < <(running_berth || true)
while read -r c; do report "cgroup $c"; done < <(find /sys/fs/cgroup -mindepth 1 -maxdepth 4 -type d \( -iname '*berth*' -o -name 'kubepods*' \) 2>/dev/null)
while read -r v; do report "veth $v"; done < <(ip -o link show type veth 2>/dev/null | awk -F': ' '{print $2}')
# Test bridges (bte*, berthtest*) and a default berth0 left without an agent.
while read -r b; do report "bridge $b"; done < <(ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^(bte|berth)')
while read -r r; do report "iptables $r"; done < <(iptables-save 2>/dev/null | grep -E '^-A .*(berth|bte2e)' | head -5)
if [ "$leaks" = 1 ]; then
	echo "check-leaks: FAIL" >&2
	exit 1
fi
echo "check-leaks: nothing left behind"
