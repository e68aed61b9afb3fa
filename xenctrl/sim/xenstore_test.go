package sim

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
)

func TestStoreReadWriteRemove(t *testing.T) {
	h := newTestHost(t)
	must(t, "StoreWrite", h.StoreWrite("/a/b/c", "1"))
	for _, tt := range []struct {
		path    string
		want    string
		wantErr error
	}{
		{"/a/b/c", "1", nil},
		{"/a/b", "", nil}, // parents are created
		{"/a/b/c/", "1", nil},
		{"/a/x", "", hypervisor.ErrNotFound},
		{"a/b", "", hypervisor.ErrInvalid},
		{"/a//b", "", hypervisor.ErrInvalid},
	} {
		got, err := h.StoreRead(tt.path)
		if got != tt.want || !errors.Is(err, tt.wantErr) {
			t.Errorf("StoreRead(%q) = %q, %v, want %q, %v", tt.path, got, err, tt.want, tt.wantErr)
		}
	}
	must(t, "StoreRemove", h.StoreRemove("/a/b"))
	if _, err := h.StoreRead("/a/b/c"); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("StoreRead(/a/b/c) after removing /a/b = %v, want %v", err, hypervisor.ErrNotFound)
	}
}

func TestStoreWatch(t *testing.T) {
	h := newTestHost(t)
	id := create(t, h, testSpec(Probe, 1))
	home, err := h.DomainPath(id)
	must(t, "DomainPath", err)
	if want := fmt.Sprintf("/local/domain/%d", id); home != want {
		t.Errorf("DomainPath(%d) = %q, want %q", id, home, want)
	}
	for _, key := range []string{"/name", "/memory/target", "/memory/static-max", "/control", "/data"} {
		if _, err := h.StoreRead(home + key); err != nil {
			t.Errorf("StoreRead(%s%s) = %v, want nil", home, key, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	events, err := h.StoreWatch(ctx, home+"/control")
	must(t, "StoreWatch", err)
	// Writers never block on a watcher that is not reading.
	const n = 500
	for i := range n {
		must(t, "StoreWrite", h.StoreWrite(fmt.Sprintf("%s/control/k%d", home, i%3), fmt.Sprint(i)))
		must(t, "StoreWrite", h.StoreWrite(home+"/data/other", fmt.Sprint(i)))
	}
	must(t, "StoreRemove", h.StoreRemove(home+"/control"))
	want := []string{home + "/control"}
	for i := range n {
		want = append(want, fmt.Sprintf("%s/control/k%d", home, i%3))
	}
	want = append(want, home+"/control")
	for i, w := range want {
		select {
		case got := <-events:
			if got != w {
				t.Fatalf("watch event %d = %q, want %q", i, got, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("watch event %d: timed out, want %q", i, w)
		}
	}
	cancel()
	for range events { // drained and closed after cancel
	}
}
