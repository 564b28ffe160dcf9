package main

import (
	"fmt"
	"io"
	"sort"
	"sync"
	"text/tabwriter"
)

// tally counts what happened, by section (ops, kills, faults, losses, leaks) and name.
type tally struct {
	mu sync.Mutex
	m  map[string]map[string]int
	// notes explain each loss and leak, printed under the table.
	notes []string
}

func newTally() *tally { return &tally{m: map[string]map[string]int{}} }

func (t *tally) add(section, name string, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m[section] == nil {
		t.m[section] = map[string]int{}
	}
	t.m[section][name] += n
}

func (t *tally) inc(section, name string) { t.add(section, name, 1) }

// problem counts a loss or leak and keeps why.
func (t *tally) problem(section, name, format string, args ...any) {
	t.add(section, name, 1)
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.notes) < 200 {
		t.notes = append(t.notes, fmt.Sprintf("%s %s: %s", section, name, fmt.Sprintf(format, args...)))
	}
}

// note keeps an explanation without counting anything.
func (t *tally) note(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.notes) < 200 {
		t.notes = append(t.notes, fmt.Sprintf(format, args...))
	}
}

func (t *tally) get(section, name string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[section][name]
}

// sum of a section.
func (t *tally) sum(section string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, v := range t.m[section] {
		n += v
	}
	return n
}

// print writes the table; losses and leaks are listed with zeros so that a clean run
// shows what was checked.
func (t *tally) print(w io.Writer, checked map[string][]string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, sec := range []string{"loss", "leak"} {
		if t.m[sec] == nil {
			t.m[sec] = map[string]int{}
		}
		for _, n := range checked[sec] {
			t.m[sec][n] += 0
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	for _, sec := range []string{"op", "op-failed", "kill", "fault", "check", "loss", "leak"} {
		names := make([]string, 0, len(t.m[sec]))
		for n := range t.m[sec] {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(tw, "%s\t%s\t%d\t\n", sec, n, t.m[sec][n])
		}
	}
	tw.Flush()
	for _, n := range t.notes {
		fmt.Fprintln(w, "  ", n)
	}
}
