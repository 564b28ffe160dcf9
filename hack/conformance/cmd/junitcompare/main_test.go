package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runDir writes a run directory as hack/conformance.sh leaves it.
func runDir(t *testing.T, runtime, selected, report string, extra map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	wrap := func(cases string) string {
		return `<?xml version="1.0" encoding="UTF-8"?><testsuites><testsuite name="e2e">` + cases + `</testsuite></testsuites>`
	}
	files := map[string]string{
		"selected/junit_01.xml": wrap(selected),
		"junit_01.xml":          wrap(report),
		"runtime":               runtime + "\n",
	}
	for k, v := range extra {
		files[k] = v
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const selected = `
<testcase name="[It] a" status="passed"></testcase>
<testcase name="[It] b" status="passed"></testcase>
<testcase name="[It] c" status="passed"></testcase>
<testcase name="[It] d" status="passed"></testcase>
<testcase name="[It] e|x" status="passed"></testcase>`

func failed(name, msg string) string {
	return `<testcase name="[It] ` + name + `" status="failed"><failure type="failed">[FAILED] ` + msg + `
  Expected
    &lt;string&gt;: output</failure></testcase>`
}

func passed(name string) string { return `<testcase name="[It] ` + name + `" status="passed"></testcase>` }

// a passes on containerd and fails on berth, b the other way round, c fails on both, d passes on
// both, e|x was skipped (by the skip list) on berth and passed on containerd.
func TestCompare(t *testing.T) {
	berth := runDir(t, "berth", selected,
		failed("a", "berth: exec failed")+passed("b")+failed("c", "no dig in image")+passed("d")+
			`<testcase name="[It] e|x" status="skipped"><skipped message="skipped"></skipped></testcase>`,
		map[string]string{"seconds": "600\n", "skip": "^e"})
	ctd := runDir(t, "containerd", selected,
		passed("a")+failed("b", "containerd: timeout")+failed("c", "no dig either")+passed("d")+passed("e|x"),
		map[string]string{"seconds": "500\n"})
	var stdout strings.Builder
	out := filepath.Join(t.TempDir(), "cmp.md")
	if err := run([]string{"-a", berth, "-b", ctd, "-out", out}, &stdout); err != nil {
		t.Fatal(err)
	}
	want := "berth: 2 passed, 2 failed, 1 skipped\ncontainerd: 3 passed, 2 failed, 0 skipped\npassed on containerd, failed on berth: 1\n"
	if stdout.String() != want {
		t.Errorf("counts:\n%s\nwant:\n%s", stdout.String(), want)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	for _, w := range []string{
		"### Passed on containerd, failed on berth (1)\n\n- [It] a\n  berth: berth: exec failed\n",
		"### Passed on berth, failed on containerd (1)\n\n- [It] b\n  containerd: containerd: timeout\n",
		"### Failed on both (1)\n\n- [It] c\n  berth: no dig in image; containerd: no dig either\n",
		"### Run on one runtime only (1)\n\n- [It] e|x\n  berth: skipped (skip list (--ginkgo.skip)); containerd: passed\n",
		"| suite wall time (s) | 600 | 500 |",
		"| d | passed | passed |",
		`| e\|x | skipped | passed |`,
	} {
		if !strings.Contains(md, w) {
			t.Errorf("comparison lacks %q:\n%s", w, md)
		}
	}
}

func TestCompareNeedsBothRuns(t *testing.T) {
	dir := runDir(t, "berth", selected, passed("a"), nil)
	if err := run([]string{"-a", dir}, &strings.Builder{}); err == nil {
		t.Error("ran with one run dir")
	}
	if err := run([]string{"-a", dir, "-b", t.TempDir()}, &strings.Builder{}); err == nil {
		t.Error("ran with a run dir that holds no report")
	}
}
