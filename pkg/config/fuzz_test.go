package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzLoad feeds arbitrary TOML to Load. Load never panics, and a config that Validate
// accepts survives `berth config` (String) and a reload unchanged: what the agent prints
// is what it runs with.
func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		``,
		Default().String(),
		"root = \"/var/lib/x\"\nlog_level = \"debug\"\nlog_format = \"json\"\n",
		"[images]\ninsecure_registries = [\"10.0.0.1:5000\"]\npull_progress_timeout = \"30s\"\nmax_concurrent_downloads = 1\n",
		"[network]\ncni_bin_dirs = []\ndefault_subnet = \"10.1.0.0/16, fd00::/64\"\ndefault_bridge = \"\"\n",
		"[streaming]\naddress = \":0\"\nidle_timeout = \"1h\"\n",
		"[metrics]\naddress = \"[::1]:9100\"\nstats_period = \"1s\"\n",
		"[nri]\nenable = false\nplugin_request_timeout = \"-1s\"\n",
		"roots = \"/x\"\n",
		"[images]\npull_progress_timeout = 5\n",
	} {
		f.Add(s)
	}
	path := filepath.Join(f.TempDir(), "config.toml")
	f.Fuzz(func(t *testing.T, data string) {
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(path, false)
		if err != nil || cfg.Validate() != nil {
			return
		}
		out := cfg.String()
		if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
		again, err := Load(path, false)
		if err != nil {
			t.Fatalf("reloading the printed config fails: %v\ninput:\n%s\nprinted:\n%s", err, data, out)
		}
		if err := again.Validate(); err != nil {
			t.Fatalf("printed config no longer validates: %v\nprinted:\n%s", err, out)
		}
		if !reflect.DeepEqual(cfg, again) {
			t.Fatalf("config changed through print and reload:\nloaded  %#v\nreloaded %#v\nprinted:\n%s", cfg, again, out)
		}
	})
}
