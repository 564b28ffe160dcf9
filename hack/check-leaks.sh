#!/usr/bin/env bash
# Fails when tests left kernel objects or processes behind: berth mounts,
# pinned network namespaces, berth processes, berth cgroups, veths.
# A test that leaks is a failing test.
#
#   hack/check-leaks.sh                      the whole node (make leaks)
#   hack/check-leaks.sh --state DIR --root DIR [--bridge NAME] [--subnet CIDR] [--ids FILE]
#
# With a scope, only what one stopped agent could have left is checked, so that other
# agents running on the node meanwhile are not reported: mounts and processes naming its
# state or root dir, ports on its bridge (the bridge itself is the agent's by design),
# other interfaces and iptables rules in its subnet, and cgroups, processes and iptables
# rules naming one of the pod or container ids in FILE (whitespace-separated).
set -u
leaks=0
report() { echo "leak: $*" >&2; leaks=1; }

state="" root="" bridge="" subnet="" ids=""
while [ $# -gt 0 ]; do
	case $1 in
	--state) state=${2:?}; shift 2 ;;
	--root) root=${2:?}; shift 2 ;;
	--bridge) bridge=${2:?}; shift 2 ;;
	--subnet) subnet=${2:?}; shift 2 ;;
	--ids) ids=${2:?}; shift 2 ;;
	*) echo "check-leaks: unknown argument $1" >&2; exit 2 ;;
	esac
done

# not_zombie filters "pid rest" lines. Exited shims are reparented to PID 1, which on some
# nodes reaps them only later: a zombie has released everything but its pid, so it is not
# a leak.
not_zombie() {
	while read -r pid rest; do
		[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] || echo "$pid $rest"
	done
}

# subnet_prefix turns 10.89.0.0/16 into "10.89.", the leading octets its addresses share.
subnet_prefix() {
	local addr=${1%/*} len=${1#*/} n
	n=$((len / 8))
	[ "$n" -ge 1 ] || n=1
	echo "$(echo "$addr" | cut -d. -f1-"$n")."
}

check_global() {
	while read -r mnt; do report "mount $mnt"; done < <(awk '$5 ~ /berth/ || $5 ~ /^\/(var\/)?run\/netns\/./ {print $5}' /proc/self/mountinfo)
	if ls -A /var/run/netns 2>/dev/null | grep -q .; then report "network namespaces: $(ls /var/run/netns | tr '\n' ' ')"; fi
	while read -r p; do report "process $p"; done < <(pgrep -a -f 'berth' | grep -v -e check-leaks -e pgrep -e 'make ' -e 'go test' -e '\.test ' | not_zombie)
	while read -r c; do report "cgroup $c"; done < <(find /sys/fs/cgroup -mindepth 1 -maxdepth 4 -type d \( -iname '*berth*' -o -name 'kubepods*' \) 2>/dev/null)
	while read -r v; do report "veth $v"; done < <(ip -o link show type veth 2>/dev/null | awk -F': ' '{print $2}')
	# Test bridges (bte*, berthtest*) and a default berth0 left without an agent.
	while read -r b; do report "bridge $b"; done < <(ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^(bte|berth)')
	while read -r r; do report "iptables $r"; done < <(iptables-save 2>/dev/null | grep -E '^-A .*(berth|bte2e)' | head -5)
}

check_scoped() {
	local dir d
	# Mount points under the agent's dirs: rootfs, shm, pinned namespaces, image volumes.
	for dir in "$state" "$root"; do
		[ -n "$dir" ] || continue
		while read -r mnt; do report "mount $mnt"; done < <(awk -v d="$dir/" 'index($5, d) == 1 || $5 == substr(d, 1, length(d) - 1) {print $5}' /proc/self/mountinfo)
	done
	# Processes naming the agent's dirs (unique temp names): the agent, its shims.
	while read -r p; do report "process $p"; done < <(
		for d in /proc/[0-9]*; do
			cmd=$(tr '\0' ' ' 2>/dev/null <"$d/cmdline") || continue
			case $cmd in
			*check-leaks*) ;;
			*"$state"*) [ -n "$state" ] && echo "${d#/proc/} $cmd" ;;
			*"$root"*) [ -n "$root" ] && echo "${d#/proc/} $cmd" ;;
			esac
		done | not_zombie)
	if [ -n "$bridge" ]; then
		while read -r v; do report "port $v on bridge $bridge"; done < <(ip -o link show master "$bridge" 2>/dev/null | awk -F': ' '{print $2}')
	fi
	if [ -n "$subnet" ]; then
		local pfx
		pfx=$(subnet_prefix "$subnet")
		while read -r a; do report "address in $subnet: $a"; done < <(ip -o -4 addr show 2>/dev/null |
			awk -v p="$pfx" -v b="$bridge" 'index($4, p) == 1 && $2 != b {print $2, $4}')
		while read -r r; do report "iptables $r"; done < <(iptables-save 2>/dev/null | grep -E '^-A ' | grep -F -- "$pfx" |
			awk -v p="$pfx" '{ for (i = 1; i <= NF; i++) if (index($i, p) == 1) { print; next } }' | head -20)
	fi
	if [ -n "$ids" ] && [ -s "$ids" ]; then
		local pat
		pat=$(mktemp)
		tr -s ' \t' '\n\n' <"$ids" | grep -E '^[0-9a-f]{12,}$' | sort -u >"$pat"
		if [ -s "$pat" ]; then
			while read -r c; do report "cgroup $c"; done < <(find /sys/fs/cgroup -mindepth 2 -maxdepth 6 -type d 2>/dev/null | grep -F -f "$pat")
			while read -r r; do report "iptables $r"; done < <(iptables-save 2>/dev/null | grep -E '^-A ' | grep -F -f "$pat" | head -20)
			while read -r p; do report "process in a pod cgroup: $p"; done < <(grep -l -F -f "$pat" /proc/[0-9]*/cgroup 2>/dev/null | cut -d/ -f3 |
				while read -r pid; do echo "$pid $(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")"; done | not_zombie)
		fi
		rm -f "$pat"
	fi
}

if [ -z "$state$root$bridge$subnet$ids" ]; then
	check_global
else
	check_scoped
fi
if [ "$leaks" = 1 ]; then
	echo "check-leaks: FAIL" >&2
	exit 1
fi
echo "check-leaks: nothing left behind"
