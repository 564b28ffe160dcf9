package main

import "testing"

// TestSmapsByMapping: PSS and anonymous memory are summed per mapped file, anonymous
// mappings under "[anon]", largest first.
func TestSmapsByMapping(t *testing.T) {
	smaps := `00400000-00452000 r-xp 00000000 08:01 1234 /usr/bin/berth-shim
Size:                328 kB
Pss:                 100 kB
Anonymous:             0 kB
00652000-00653000 rw-p 00052000 08:01 1234 /usr/bin/berth-shim
Pss:                   4 kB
Anonymous:             4 kB
c000000000-c000400000 rw-p 00000000 00:00 0
Pss:                 900 kB
Anonymous:           900 kB
7f0000000000-7f0000100000 rw-p 00000000 00:00 0
Pss:                 300 kB
Anonymous:           300 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
Pss:                  16 kB
Anonymous:            16 kB
`
	got := smapsByMapping(smaps)
	want := []mapping{{"[anon]", 1200, 1200}, {"/usr/bin/berth-shim", 104, 4}, {"[stack]", 16, 16}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mapping %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}
