package config

import (
	"maps"
	"reflect"
	"slices"

	"github.com/BurntSushi/toml"
)

// Changed lists the settings (TOML keys, dotted: "images.pinned") whose values differ
// between a and b, sorted; for the agent's reload, which applies some and names the rest.
func Changed(a, b Config) []string {
	fa, fb := flatten(a), flatten(b)
	keys := map[string]bool{}
	for k := range fa {
		keys[k] = true
	}
	for k := range fb {
		keys[k] = true
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		if !reflect.DeepEqual(fa[k], fb[k]) {
			out = append(out, k)
		}
	}
	return out
}

// flatten maps each setting's dotted TOML key to its value, as the file would spell it.
func flatten(c Config) map[string]any {
	var tree map[string]any
	if _, err := toml.Decode(c.String(), &tree); err != nil {
		return nil // String renders what Decode reads: not reached
	}
	out := map[string]any{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+".", sub)
				continue
			}
			out[prefix+k] = v
		}
	}
	walk("", tree)
	return out
}
