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
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
)

type suites struct {
	Suites []struct {
		Cases []testCase `xml:"testcase"`
	} `xml:"testsuite"`
}

type testCase struct {
	Name    string `xml:"name,attr"`
	Status  string `xml:"status,attr"`
	Skipped *struct {
		Message string `xml:"message,attr"`
	} `xml:"skipped"`
	Failure *struct {
		Type string `xml:"type,attr"`
		Text string `xml:",chardata"`
	} `xml:"failure"`
	Error *struct {
		Text string `xml:",chardata"`
	} `xml:"error"`
}

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
	sel, err := read(*selected)
	if err != nil {
		return err
	}
	got, err := read(*report)
	if err != nil {
		return err
	}
	var skipRE *regexp.Regexp
	if *skip != "" {
		if skipRE, err = regexp.Compile(*skip); err != nil {
			return fmt.Errorf("skip regex: %w", err)
		}
	}
	s := summarize(sel, got, skipRE)
	fmt.Fprintf(out, "%d passed, %d failed, %d skipped\n", len(s.passed), len(s.failed), len(s.skipped))
	if *details == "" {
		return nil
	}
	return os.WriteFile(*details, []byte(s.details()), 0o644)
}

func read(path string) ([]testCase, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	var s suites
	if err := xml.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	var out []testCase
	for _, su := range s.Suites {
		out = append(out, su.Cases...)
	}
	return out, nil
}

type summary struct {
	passed  []string
	failed  map[string]string // name -> first line of the failure
	skipped map[string]string // name -> why
}

// suiteNode tells Ginkgo's suite-level nodes ([SynchronizedBeforeSuite], [ReportAfterSuite]...)
// from specs: they count only when they fail.
func suiteNode(name string) bool {
	return !strings.HasPrefix(name, "[It] ")
}

func summarize(selected, got []testCase, skip *regexp.Regexp) summary {
	s := summary{failed: map[string]string{}, skipped: map[string]string{}}
	ran := map[string]testCase{}
	for _, c := range got {
		ran[c.Name] = c
		if suiteNode(c.Name) && failedState(c.Status) {
			s.failed[c.Name] = firstLine(c)
		}
	}
	for _, c := range selected {
		if suiteNode(c.Name) || c.Status != "passed" {
			continue
		}
		r, ok := ran[c.Name]
		switch {
		case !ok:
			s.skipped[c.Name] = "not in the run's report"
		case r.Status == "passed":
			s.passed = append(s.passed, c.Name)
		case r.Status == "interrupted":
			// Stopped by a SIGINT to the run, neither passed nor failed.
			s.skipped[c.Name] = "interrupted (the run was stopped)"
		case failedState(r.Status):
			s.failed[c.Name] = firstLine(r)
		case r.Skipped != nil && r.Skipped.Message != "skipped":
			s.skipped[c.Name] = strings.TrimPrefix(r.Skipped.Message, "skipped - ")
		case skip != nil && skip.MatchString(strings.TrimPrefix(c.Name, "[It] ")):
			s.skipped[c.Name] = "skip list (--ginkgo.skip)"
		default:
			// Ginkgo reports the specs an interrupted run never reached as skipped.
			s.skipped[c.Name] = "not run (" + r.Status + ")"
		}
	}
	return s
}

func failedState(st string) bool {
	switch st {
	case "failed", "panicked", "aborted", "timedout":
		return true
	}
	return false
}

func firstLine(c testCase) string {
	text := c.Status
	if c.Failure != nil {
		text = c.Failure.Text
	} else if c.Error != nil {
		text = c.Error.Text
	}
	for _, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "[") {
			return l
		}
	}
	return strings.TrimSpace(text)
}

func (s summary) details() string {
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
	section("Failed", s.failed)
	section("Skipped", s.skipped)
	return b.String()
}
