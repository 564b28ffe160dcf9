package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeReport(t *testing.T, cases string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "junit.xml")
	x := `<?xml version="1.0" encoding="UTF-8"?><testsuites><testsuite name="e2e">` + cases + `</testsuite></testsuites>`
	if err := os.WriteFile(p, []byte(x), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The dry run selects a to e and g (f is outside the focus); the run passes a, fails b,
// d skips itself, e was removed by the skip list, c is missing, g was never reached.
func TestSummarize(t *testing.T) {
	sel := writeReport(t, `
<testcase name="[SynchronizedBeforeSuite]" status="passed"></testcase>
<testcase name="[It] a" status="passed"></testcase>
<testcase name="[It] b" status="passed"></testcase>
<testcase name="[It] c" status="passed"></testcase>
<testcase name="[It] d" status="passed"></testcase>
<testcase name="[It] e" status="passed"></testcase>
<testcase name="[It] g" status="passed"></testcase>
<testcase name="[It] f" status="skipped"><skipped message="skipped"></skipped></testcase>`)
	got := writeReport(t, `
<testcase name="[SynchronizedBeforeSuite]" status="passed"></testcase>
<testcase name="[ReportAfterSuite] Kubernetes e2e suite report" status="failed"><failure type="failed">[FAILED] in [ReportAfterSuite] - report.go:12
could not write</failure></testcase>
<testcase name="[It] a" status="passed"></testcase>
<testcase name="[It] b" status="failed"><failure type="failed">[FAILED] Timed out
  pod never became ready</failure></testcase>
<testcase name="[It] d" status="skipped"><skipped message="skipped - Requires at least 2 nodes"></skipped></testcase>
<testcase name="[It] e" status="skipped"><skipped message="skipped"></skipped></testcase>
<testcase name="[It] g" status="skipped"><skipped message="skipped"></skipped></testcase>
<testcase name="[It] f" status="skipped"><skipped message="skipped"></skipped></testcase>`)
	var out strings.Builder
	details := filepath.Join(t.TempDir(), "summary.md")
	if err := run([]string{"-selected", sel, "-report", got, "-skip", "^e$", "-details", details}, &out); err != nil {
		t.Fatal(err)
	}
	if sum, want := out.String(), "1 passed, 2 failed, 4 skipped\n"; sum != want {
		t.Errorf("summary %q, want %q", sum, want)
	}
	b, err := os.ReadFile(details)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"- [It] b\n  Timed out", "- [It] d\n  Requires at least 2 nodes",
		"- [It] e\n  skip list", "- [It] c\n  not in the run's report", "- [It] g\n  not run (skipped)", "could not write"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("details lack %q:\n%s", want, b)
		}
	}
}
