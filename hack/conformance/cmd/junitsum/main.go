// Command junitsum counts an e2e.test JUnit report (Ginkgo v2's, --report-dir) against the
// specs the focus selected: it prints "N passed, N failed, N skipped", where skipped is every
// selected spec that did not run (listed in hack/conformance/skips.txt, or skipped by the spec
// itself, e.g. for want of a second node, or never reached by an interrupted run), and with
// -details the failed and skipped specs.
//
//	junitsum -selected DRYRUN.xml -report RUN.xml [-skip REGEX] [-details FILE]
//
// DRYRUN.xml is the report of `e2e.test --ginkgo.dry-run` with the focus alone: every spec
// it reports as passed is selected.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"

	"berth.local/conformancebuild/junit"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "junitsum:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("junitsum", flag.ContinueOnError)
	selected := fs.String("selected", "", "JUnit report of a dry run with the focus alone")
	report := fs.String("report", "", "JUnit report of the run")
	details := fs.String("details", "", "write the failed and skipped specs here")
	skip := fs.String("skip", "", "the run's --ginkgo.skip: a selected spec it matches is skipped by the skip list")
	if err := fs.Parse(args); err != nil {
		return err
	}
	sel, err := junit.Read(*selected)
	if err != nil {
		return err
	}
	got, err := junit.Read(*report)
	if err != nil {
		return err
	}
	var skipRE *regexp.Regexp
	if *skip != "" {
		if skipRE, err = regexp.Compile(*skip); err != nil {
			return fmt.Errorf("skip regex: %w", err)
		}
	}
	s := junit.Summarize(sel, got, skipRE)
	fmt.Fprintf(out, "%d passed, %d failed, %d skipped\n", len(s.Passed), len(s.Failed), len(s.Skipped))
	if *details == "" {
		return nil
	}
	return os.WriteFile(*details, []byte(detailsOf(s)), 0o644)
}

func detailsOf(s junit.Summary) string {
	var b strings.Builder
	section := func(title string, m map[string]string) {
		names := make([]string, 0, len(m))
		for n := range m {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(&b, "## %s (%d)\n\n", title, len(names))
		for _, n := range names {
			fmt.Fprintf(&b, "- %s\n  %s\n", n, m[n])
		}
		b.WriteString("\n")
	}
	section("Failed", s.Failed)
	section("Skipped", s.Skipped)
	return b.String()
}
