package main

import (
	"fmt"
	"io"
	"strings"
)

// berth parses its command line with the standard flag package (no cobra), so the
// completion scripts are written by hand. Keep them in line with run and bindFlags.
var (
	completionCommands = []string{"config", "doctor", "images", "version", "completion"}
	completionFlags    = []string{"--config", "--root", "--state", "--listen", "--log-level", "--log-format", "--shim-binary", "--version"}
)

const bashCompletion = `# bash completion for berth; load with: source <(berth completion bash)
_berth() {
	local cur prev words cword
	cur="${COMP_WORDS[COMP_CWORD]}"
	prev="${COMP_WORDS[COMP_CWORD-1]}"
	case "$prev" in
	--config|--shim-binary) COMPREPLY=($(compgen -f -- "$cur")); return ;;
	--root|--state) COMPREPLY=($(compgen -d -- "$cur")); return ;;
	--listen) COMPREPLY=($(compgen -f -- "$cur")); return ;;
	--log-level) COMPREPLY=($(compgen -W "debug info warn error" -- "$cur")); return ;;
	--log-format) COMPREPLY=($(compgen -W "text json" -- "$cur")); return ;;
	esac
	local i cmd="" sub=""
	for ((i = 1; i < COMP_CWORD; i++)); do
		case "${COMP_WORDS[i]}" in
		--config|--root|--state|--listen|--log-level|--log-format|--shim-binary) ((i++)) ;;
		-*) ;;
		*) if [[ -z "$cmd" ]]; then cmd="${COMP_WORDS[i]}"; elif [[ -z "$sub" ]]; then sub="${COMP_WORDS[i]}"; fi ;;
		esac
	done
	case "$cmd" in
	"") if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "%FLAGS%" -- "$cur")); else COMPREPLY=($(compgen -W "%COMMANDS%" -- "$cur")); fi ;;
	config) if [[ -z "$sub" ]]; then COMPREPLY=($(compgen -W "validate" -- "$cur")); else COMPREPLY=($(compgen -f -- "$cur")); fi ;;
	doctor) COMPREPLY=($(compgen -W "--fix --json --shared-node" -- "$cur")) ;;
	images) if [[ -z "$sub" ]]; then COMPREPLY=($(compgen -W "import" -- "$cur")); else COMPREPLY=($(compgen -f -- "$cur")); fi ;;
	completion) COMPREPLY=($(compgen -W "bash zsh fish" -- "$cur")) ;;
	esac
}
complete -F _berth berth
`

const zshCompletion = `# zsh completion for berth; load with: source <(berth completion zsh)
autoload -U +X bashcompinit && bashcompinit
` + bashCompletion

const fishCompletion = `# fish completion for berth; load with: berth completion fish | source
complete -c berth -f
complete -c berth -n __fish_use_subcommand -a "%COMMANDS%"
complete -c berth -l config -r -F -d "config file (TOML)"
complete -c berth -l root -r -a "(__fish_complete_directories)" -d "persistent state directory"
complete -c berth -l state -r -a "(__fish_complete_directories)" -d "runtime state directory"
complete -c berth -l listen -r -F -d "CRI unix socket"
complete -c berth -l log-level -r -a "debug info warn error"
complete -c berth -l log-format -r -a "text json"
complete -c berth -l shim-binary -r -F -d "berth-shim path"
complete -c berth -l version -d "print the version and exit"
complete -c berth -n "__fish_seen_subcommand_from config" -a validate
complete -c berth -n "__fish_seen_subcommand_from config; and __fish_seen_subcommand_from validate" -F
complete -c berth -n "__fish_seen_subcommand_from doctor" -l fix -l json -l shared-node
complete -c berth -n "__fish_seen_subcommand_from images" -a import
complete -c berth -n "__fish_seen_subcommand_from import" -F
complete -c berth -n "__fish_seen_subcommand_from completion" -a "bash zsh fish"
`

// completionCommand prints the completion script for a shell.
func completionCommand(args []string, w io.Writer) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: berth completion bash|zsh|fish")
	}
	var script string
	switch args[0] {
	case "bash":
		script = bashCompletion
	case "zsh":
		script = zshCompletion
	case "fish":
		script = fishCompletion
	default:
		return fmt.Errorf("completion: unknown shell %q (bash, zsh, fish)", args[0])
	}
	r := strings.NewReplacer("%COMMANDS%", strings.Join(completionCommands, " "), "%FLAGS%", strings.Join(completionFlags, " "))
	_, err := io.WriteString(w, r.Replace(script))
	return err
}
