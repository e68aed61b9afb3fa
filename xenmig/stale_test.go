package xenmig

import (
	"io"
	"os"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/xenctrl/sim"
)

func TestReapStaleShells(t *testing.T) {
	alive, err := ownerToken(os.Getpid())
	if err != nil {
		t.Fatalf("ownerToken(self) = %v", err)
	}
	dead := DeadOwnerToken(t)
	if ownerAlive(dead) || !ownerAlive(alive) {
		t.Fatalf("ownerAlive(dead %q) = %v, ownerAlive(self %q) = %v, want false, true", dead, ownerAlive(dead), alive, ownerAlive(alive))
	}
	tests := []struct {
		name    string
		owner   string // "" for no mark
		running bool
		reaped  bool
	}{
		{"a--incoming", dead, false, true},        // its receiver was killed
		{"b--incoming", alive, false, false},      // its receiver still works on it
		{"c--incoming", "", false, false},         // not ours: xl migrate-receive's
		{"d--incoming", dead, true, false},        // runs: switched over, a guest now
		{"e", dead, false, false},                 // not a shell's name
		{"f--incoming", "garbage", false, true},   // a mark naming no process
		{"g--incoming", "1 12345", false, true},   // pid 1, another start time: reused
		{"h--incoming", "-4 0", false, true},      // no such pid
		{"i--incoming", dead + " x", false, true}, // trailing junk: still its pid
	}
	h := sim.NewHost()
	defer h.Close()
	ids := make(map[string]hypervisor.DomID)
	for _, tt := range tests {
		spec := sim.GuestSpec{Name: tt.name, VCPUs: 1, MemoryPages: 64, UsedPages: 8, Seed: 1, Workload: sim.DefaultWorkload(sim.Idle, 64)}
		d, err := h.CreateDomain(spec)
		if err != nil {
			t.Fatalf("CreateDomain(%s) = %v", tt.name, err)
		}
		ids[tt.name] = d
		if tt.running {
			if err := h.Unpause(d); err != nil {
				t.Fatalf("Unpause(%s) = %v", tt.name, err)
			}
		}
		if tt.owner != "" {
			home, _ := h.DomainPath(d)
			if err := h.StoreWrite(home+"/"+shellOwnerKey, tt.owner); err != nil {
				t.Fatalf("StoreWrite = %v", err)
			}
		}
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	got, err := ReapStaleShells(h, log)
	if err != nil {
		t.Fatalf("ReapStaleShells = %v", err)
	}
	reaped := make(map[string]bool)
	for _, s := range got {
		reaped[s.Name] = true
		if s.Domain != ids[s.Name] {
			t.Errorf("reaped %s as domain %d, want %d", s.Name, s.Domain, ids[s.Name])
		}
	}
	for _, tt := range tests {
		if reaped[tt.name] != tt.reaped {
			t.Errorf("ReapStaleShells reaped %s = %v, want %v", tt.name, reaped[tt.name], tt.reaped)
		}
		_, err := h.Lookup(tt.name)
		if exists := err == nil; exists == tt.reaped {
			t.Errorf("after ReapStaleShells, %s exists = %v, want %v", tt.name, exists, !tt.reaped)
		}
	}
}
