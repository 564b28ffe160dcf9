package store

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Node-level settings the kubelet hands the runtime once and does not repeat: they must
// outlive an agent restart.
const (
	// SettingPodCIDR is the node's pod CIDR from UpdateRuntimeConfig. The kubelet sends it only
	// when it differs from what it sent last, so a restarted agent must remember it.
	SettingPodCIDR = "pod-cidr"
)

// SetSetting records a setting; "" removes it.
func (d *DB) SetSetting(key, value string) error {
	var err error
	if value == "" {
		err = d.delete(bucketSettings, key)
	} else {
		err = d.put(bucketSettings, key, []byte(value))
	}
	if err != nil {
		return fmt.Errorf("record setting %s: %w", key, err)
	}
	return nil
}

// Setting returns a recorded setting, "" when there is none.
func (d *DB) Setting(key string) (string, error) {
	var v string
	err := d.bolt.View(func(tx *bolt.Tx) error {
		v = string(tx.Bucket(bucketSettings).Get([]byte(key)))
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("read setting %s: %w", key, err)
	}
	return v, nil
}
