package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// faultPluginName is the CNI plugin the driver chains after bridge and portmap: it is this
// binary, copied into a CNI bin dir under that name, and main runs pluginMain when started so.
const faultPluginName = "chaos-fault"

// Fault plugin modes, read from the control file named in its config on every call.
const (
	pluginOK   = "ok"
	pluginFail = "fail"
	pluginHang = "hang"
)

// pluginMain is a pass-through CNI plugin (ADD returns the previous result) that fails or
// hangs when its control file says so, to see the agent survive a misbehaving chain.
func pluginMain() int {
	cmd := os.Getenv("CNI_COMMAND")
	if cmd == "VERSION" {
		fmt.Print(`{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}`)
		return 0
	}
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		return pluginError("read config: " + err.Error())
	}
	var conf struct {
		CNIVersion string          `json:"cniVersion"`
		Control    string          `json:"control"`
		PrevResult json.RawMessage `json:"prevResult"`
	}
	if err := json.Unmarshal(raw, &conf); err != nil {
		return pluginError("parse config: " + err.Error())
	}
	if cmd == "ADD" || cmd == "DEL" {
		mode, _ := os.ReadFile(conf.Control)
		switch strings.TrimSpace(string(mode)) {
		case pluginFail:
			return pluginError("injected failure of " + cmd)
		case pluginHang:
			time.Sleep(10 * time.Minute) // until the agent's context or the killer ends it
		}
	}
	if cmd == "ADD" {
		if len(conf.PrevResult) == 0 {
			return pluginError("no prevResult: must follow an interface plugin")
		}
		os.Stdout.Write(conf.PrevResult)
	}
	return 0
}

func pluginError(msg string) int {
	b, _ := json.Marshal(map[string]any{"cniVersion": "1.0.0", "code": 999, "msg": "chaos-fault: " + msg})
	os.Stdout.Write(b)
	return 1
}
