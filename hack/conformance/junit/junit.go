// Package junit reads e2e.test's JUnit reports (Ginkgo v2's, --report-dir) and sorts the specs a
// focus selected into passed, failed and skipped. junitsum counts one run with it, junitcompare
// puts two runs (berth and containerd) side by side.
package junit

import (
	"encoding/xml"
	"fmt"
	"os"
	"regexp"
	"strings"
)

type suites struct {
	Suites []struct {
		Cases []Case `xml:"testcase"`
	} `xml:"testsuite"`
}

// Case is one testcase of a report: a spec ("[It] ...") or a suite-level node.
type Case struct {
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

// Read parses a report file into its testcases, every suite's in order.
func Read(path string) ([]Case, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	var s suites
	if err := xml.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	var out []Case
	for _, su := range s.Suites {
		out = append(out, su.Cases...)
	}
	return out, nil
}

// Summary is a run's selected specs by outcome, and the suite-level nodes that failed.
type Summary struct {
	Passed  []string
	Failed  map[string]string // name -> first line of the failure
	Skipped map[string]string // name -> why
}

// SuiteNode tells Ginkgo's suite-level nodes ([SynchronizedBeforeSuite], [ReportAfterSuite]...)
// from specs: they count only when they fail.
func SuiteNode(name string) bool {
	return !strings.HasPrefix(name, "[It] ")
}

// Summarize sorts the specs of selected (the dry run's report with the focus alone: every
// spec it reports as passed is selected) by their outcome in got; skip is the run's
// --ginkgo.skip, so that a spec it removed is told from one the run never reached.
func Summarize(selected, got []Case, skip *regexp.Regexp) Summary {
	s := Summary{Failed: map[string]string{}, Skipped: map[string]string{}}
	ran := map[string]Case{}
	for _, c := range got {
		ran[c.Name] = c
		if SuiteNode(c.Name) && FailedState(c.Status) {
			s.Failed[c.Name] = FirstLine(c)
		}
	}
	for _, c := range selected {
		if SuiteNode(c.Name) || c.Status != "passed" {
			continue
		}
		r, ok := ran[c.Name]
		switch {
		case !ok:
			s.Skipped[c.Name] = "not in the run's report"
		case r.Status == "passed":
			s.Passed = append(s.Passed, c.Name)
		case r.Status == "interrupted":
			// Stopped by a SIGINT to the run, neither passed nor failed.
			s.Skipped[c.Name] = "interrupted (the run was stopped)"
		case FailedState(r.Status):
			s.Failed[c.Name] = FirstLine(r)
		case r.Skipped != nil && r.Skipped.Message != "skipped":
			s.Skipped[c.Name] = strings.TrimPrefix(r.Skipped.Message, "skipped - ")
		case skip != nil && skip.MatchString(strings.TrimPrefix(c.Name, "[It] ")):
			s.Skipped[c.Name] = "skip list (--ginkgo.skip)"
		default:
			// Ginkgo reports the specs an interrupted run never reached as skipped.
			s.Skipped[c.Name] = "not run (" + r.Status + ")"
		}
	}
	return s
}

// FailedState tells the statuses that count as a failure.
func FailedState(st string) bool {
	switch st {
	case "failed", "panicked", "aborted", "timedout":
		return true
	}
	return false
}

// FirstLine is the first line of a failure that says something: Ginkgo's message follows its
// "[FAILED] " tag on the first line; bare tags and location lines ("[FAILED] in [It] - ...")
// are passed over.
func FirstLine(c Case) string {
	text := c.Status
	if c.Failure != nil {
		text = c.Failure.Text
	} else if c.Error != nil {
		text = c.Error.Text
	}
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if m, ok := strings.CutPrefix(l, "[FAILED] "); ok && !strings.HasPrefix(m, "in [") {
			return m
		}
		if l != "" && !strings.HasPrefix(l, "[") {
			return l
		}
	}
	return strings.TrimSpace(text)
}
