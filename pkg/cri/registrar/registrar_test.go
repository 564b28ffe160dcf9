package registrar

import (
	"errors"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
)

func TestReserve(t *testing.T) {
	tests := []struct {
		name      string
		setup     [][2]string // name, id reserved first
		reserve   [2]string
		wantErr   error
		wantOwner string
	}{
		{name: "free name", reserve: [2]string{"a", "1"}, wantOwner: "1"},
		{name: "same pair twice", setup: [][2]string{{"a", "1"}}, reserve: [2]string{"a", "1"}, wantOwner: "1"},
		{name: "name held by other", setup: [][2]string{{"a", "1"}}, reserve: [2]string{"a", "2"}, wantErr: errdefs.ErrAlreadyExists, wantOwner: "1"},
		{name: "id holds another name", setup: [][2]string{{"a", "1"}}, reserve: [2]string{"b", "1"}, wantErr: errdefs.ErrAlreadyExists},
		{name: "empty name", reserve: [2]string{"", "1"}, wantErr: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New()
			for _, s := range tt.setup {
				if err := r.Reserve(s[0], s[1]); err != nil {
					t.Fatal(err)
				}
			}
			err := r.Reserve(tt.reserve[0], tt.reserve[1])
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Reserve = %v, want %v", err, tt.wantErr)
			}
			if tt.wantOwner != "" {
				if got, _ := r.Holder(tt.reserve[0]); got != tt.wantOwner {
					t.Fatalf("holder = %q, want %q", got, tt.wantOwner)
				}
			}
		})
	}
}

func TestConflictNamesHolder(t *testing.T) {
	r := New()
	if err := r.Reserve("pod_ns_uid_0", "abc"); err != nil {
		t.Fatal(err)
	}
	err := r.Reserve("pod_ns_uid_0", "def")
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Holder != "abc" {
		t.Fatalf("err = %v, want ConflictError held by abc", err)
	}
	if !errdefs.IsAlreadyExists(err) {
		t.Fatalf("conflict is not AlreadyExists: %v", err)
	}
}

func TestRelease(t *testing.T) {
	r := New()
	if err := r.Reserve("a", "1"); err != nil {
		t.Fatal(err)
	}
	r.Release("a")
	if err := r.Reserve("a", "2"); err != nil {
		t.Fatalf("reserve after release: %v", err)
	}
	r.ReleaseByID("2")
	if _, ok := r.Holder("a"); ok {
		t.Fatal("name still held after ReleaseByID")
	}
	if err := r.Reserve("b", "2"); err != nil {
		t.Fatalf("id not freed by ReleaseByID: %v", err)
	}
	r.Release("missing") // no-op
}

func TestReserveConcurrentOneWins(t *testing.T) {
	r := New()
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r.Reserve("same", string(rune('A'+i))) == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d reservations won, want 1", wins)
	}
}
