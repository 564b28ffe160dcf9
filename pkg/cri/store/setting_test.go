package store

import (
	"path/filepath"
	"testing"
	"time"
)

func TestSettingSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	db, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := db.Setting(SettingPodCIDR); err != nil || v != "" {
		t.Fatalf("unset setting = %q, %v; want empty", v, err)
	}
	if err := db.SetSetting(SettingPodCIDR, "10.1.0.0/24"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s := openTest(t, path)
	if v, err := s.Setting(SettingPodCIDR); err != nil || v != "10.1.0.0/24" {
		t.Fatalf("after reopen: %q, %v; want 10.1.0.0/24", v, err)
	}
	if err := s.SetSetting(SettingPodCIDR, ""); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Setting(SettingPodCIDR); v != "" {
		t.Fatalf("cleared setting = %q", v)
	}
}
