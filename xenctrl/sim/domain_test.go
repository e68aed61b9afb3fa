package sim

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
)

func TestCreateDomainErrors(t *testing.T) {
	h := newTestHost(t)
	create(t, h, testSpec(Idle, 1))
	for _, tt := range []struct {
		name string
		mod  func(*GuestSpec)
		want error
	}{
		{"duplicate name", func(*GuestSpec) {}, hypervisor.ErrBusy},
		{"no vCPUs", func(s *GuestSpec) { s.Name, s.VCPUs = "b", 0 }, hypervisor.ErrInvalid},
		{"unknown workload", func(s *GuestSpec) { s.Name, s.Workload.Kind = "c", "bitcoin" }, hypervisor.ErrInvalid},
		{"hole beyond memory", func(s *GuestSpec) { s.Name, s.Holes = "d", []Hole{{Start: 4000, Count: 200}} }, hypervisor.ErrInvalid},
		{"too little memory", func(s *GuestSpec) { s.Name, s.MemoryPages, s.Holes = "e", 3, nil }, hypervisor.ErrInvalid},
	} {
		s := testSpec(Idle, 1)
		tt.mod(&s)
		if _, err := h.CreateDomain(s); !errors.Is(err, tt.want) {
			t.Errorf("%s: CreateDomain() = %v, want %v", tt.name, err, tt.want)
		}
		if tt.want == hypervisor.ErrInvalid {
			if err := ValidateSpec(s); !errors.Is(err, tt.want) {
				t.Errorf("%s: ValidateSpec() = %v, want %v", tt.name, err, tt.want)
			}
		}
	}
}

func TestShellWithoutContext(t *testing.T) {
	src := newTestHost(t)
	sid := create(t, src, testSpec(Stress, 2))
	cfg, err := src.Config(sid)
	must(t, "Config", err)
	if cfg.Backend != Backend || cfg.VCPUs != 2 || cfg.MaxPages != 4096-0x40 {
		t.Errorf("Config() = %+v, want backend %q, 2 vCPUs, %d pages", cfg, Backend, 4096-0x40)
	}
	dst := newTestHost(t)
	did, err := dst.CreateShell(cfg)
	must(t, "CreateShell", err)
	if err := dst.Unpause(did); !errors.Is(err, hypervisor.ErrInvalid) {
		t.Errorf("Unpause() of a shell without context = %v, want %v", err, hypervisor.ErrInvalid)
	}
	if _, err := dst.SaveCPU(did); !errors.Is(err, hypervisor.ErrInvalid) {
		t.Errorf("SaveCPU() of a shell without context = %v, want %v", err, hypervisor.ErrInvalid)
	}
	pop, err := dst.Populated(did)
	must(t, "Populated", err)
	if pop.Count() != cfg.MaxPages || pop.Test(0xa00) {
		t.Errorf("shell populated %d gfns (hole populated: %v), want %d without the hole", pop.Count(), pop.Test(0xa00), cfg.MaxPages)
	}
	if _, err := dst.CreateShell(hypervisor.DomainConfig{Name: "x", Backend: "xen"}); !errors.Is(err, hypervisor.ErrInvalid) {
		t.Errorf("CreateShell(backend xen) = %v, want %v", err, hypervisor.ErrInvalid)
	}
	if err := dst.RestoreCPU(did, hypervisor.CPUState{HVMContext: []byte("garbage")}); !errors.Is(err, hypervisor.ErrInvalid) {
		t.Errorf("RestoreCPU(garbage) = %v, want %v", err, hypervisor.ErrInvalid)
	}
	cpu, err := src.SaveCPU(sid)
	must(t, "SaveCPU", err)
	must(t, "RestoreCPU", dst.RestoreCPU(did, cpu))
	must(t, "Unpause", dst.Unpause(did))
}

func TestPauseNests(t *testing.T) {
	h := newTestHost(t)
	id := create(t, h, testSpec(Idle, 2))
	state := func() hypervisor.State {
		info, err := h.Info(id)
		must(t, "Info", err)
		return info.State
	}
	if s := state(); s != hypervisor.StatePaused {
		t.Errorf("state after CreateDomain = %v, want %v", s, hypervisor.StatePaused)
	}
	must(t, "Unpause", h.Unpause(id))
	waitSteps(t, h, id, 0, 10)
	must(t, "Pause", h.Pause(id))
	must(t, "Pause", h.Pause(id))
	p1, _ := h.Progress(id)
	must(t, "Unpause", h.Unpause(id))
	time.Sleep(2 * time.Millisecond)
	if p2, _ := h.Progress(id); p2.Steps[0] != p1.Steps[0] || state() != hypervisor.StatePaused {
		t.Errorf("steps after one of two Unpauses = %v, want %v (still paused)", p2.Steps, p1.Steps)
	}
	must(t, "Unpause", h.Unpause(id))
	waitSteps(t, h, id, 0, p1.Steps[0]+10)
	if s := state(); s != hypervisor.StateRunning {
		t.Errorf("state = %v, want %v", s, hypervisor.StateRunning)
	}
	if err := h.Unpause(id); !errors.Is(err, hypervisor.ErrInvalid) {
		t.Errorf("Unpause() of a running domain = %v, want %v", err, hypervisor.ErrInvalid)
	}
}

func TestRenameLookupDestroy(t *testing.T) {
	h := newTestHost(t)
	id := create(t, h, testSpec(Idle, 1))
	must(t, "Rename", h.Rename(id, "guest--migratedaway"))
	if got, err := h.Lookup("guest--migratedaway"); err != nil || got != id {
		t.Errorf("Lookup(new name) = %d, %v, want %d, nil", got, err, id)
	}
	if _, err := h.Lookup("guest"); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("Lookup(old name) = %v, want %v", err, hypervisor.ErrNotFound)
	}
	doms, err := h.Domains()
	if err != nil || len(doms) != 1 || doms[0].Name != "guest--migratedaway" || !doms[0].HVM {
		t.Errorf("Domains() = %+v, %v, want one HVM domain named guest--migratedaway", doms, err)
	}
	must(t, "Unpause", h.Unpause(id))
	must(t, "Destroy", h.Destroy(id))
	if _, err := h.Info(id); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("Info() after Destroy = %v, want %v", err, hypervisor.ErrNotFound)
	}
	if _, err := h.StoreRead(domainPath(id) + "/name"); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("xenstore home after Destroy: %v, want %v", err, hypervisor.ErrNotFound)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := h.WaitDone(ctx, id); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("WaitDone() after Destroy = %v, want %v", err, hypervisor.ErrNotFound)
	}
}

func TestPacing(t *testing.T) {
	for _, rate := range []float64{1000, 50000} {
		h := newTestHost(t)
		s := testSpec(Idle, 1)
		s.Workload.Rate = rate
		id := create(t, h, s)
		must(t, "Unpause", h.Unpause(id))
		time.Sleep(100 * time.Millisecond)
		want := rate / 10
		if n := float64(steps(t, h, id, 0)); n < want*0.3 || n > want*1.5 {
			t.Errorf("steps in 100 ms at %g steps/s = %g, want about %g", rate, n, want)
		}
	}
}
