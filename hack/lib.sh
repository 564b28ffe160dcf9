# shellcheck shell=bash
# Helpers shared by the hack/ scripts that start agents and registries of their own and must
# leave the node as they found it. Source it after defining log() (and OUT, where teardown
# messages go). Nothing here touches what a script did not start.

# stop_pid pid name: SIGTERM, then SIGKILL after 20s.
stop_pid() {
	local pid=$1 name=$2 i
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 200; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	log "$name ($pid) ignored SIGTERM, killing it"
	kill -KILL "$pid" 2>/dev/null || true
}

# kill_naming dir: SIGKILL every process naming dir on its command line. The shims (and their
# children) outlive their agent by design; a script's own name its private state dir.
kill_naming() {
	local dir=$1 p
	[[ -n $dir ]] || return 0
	for p in $(grep -lF "$dir" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do
		[[ $p == "$$" || $p == "$BASHPID" ]] && continue
		grep -qF "$dir" "/proc/$p/cmdline" 2>/dev/null || continue # the grep above, gone
		log "killing leftover $(tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null) ($p)"
		kill -KILL "$p" 2>/dev/null
	done
}

# remove_dir dir: unmount whatever is still mounted below it (deepest first), then remove it.
remove_dir() {
	local dir=$1 m
	[[ -n $dir && -d $dir ]] || return 0
	grep -F " $dir/" /proc/self/mountinfo | awk '{ print $5 }' | sort -r | while read -r m; do
		umount -l "$m" 2>>"${OUT:-/dev/null}/teardown.log" || log "cannot unmount $m"
	done
	rm -rf "$dir" || log "cannot remove $dir"
}
