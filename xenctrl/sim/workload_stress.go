package sim

// stress reads or writes whole pages of its working set: the first ws pages
// of its arena, its boot pages and pages it allocates while warming up.
type stress struct {
	ws     int    // working-set pages of this vCPU
	write  uint64 // percent of accesses that write
	random bool

	setup uint32 // next working-set page to allocate; ws when warm
	pos   uint32 // next page of a sequential sweep
}

func newStress(v *vcpu) program {
	w := v.d.spec.Workload
	s := &stress{
		ws:     perVCPU(w.WorkingSet, len(v.d.vcpus), len(v.arena.pages)/2, len(v.arena.pages)),
		write:  uint64(w.WritePercent),
		random: w.Random,
	}
	s.setup = uint32(min(s.ws, v.arena.boot))
	return s
}

func (s *stress) step(v *vcpu) bool {
	if int(s.setup) < s.ws {
		v.claimPage(int(s.setup))
		v.fillPage(v.arena.pages[s.setup], v.rand())
		s.setup++
		return true
	}
	i := uint64(s.pos)
	if s.random {
		i = v.randn(uint64(s.ws))
	} else {
		s.pos = (s.pos + 1) % uint32(s.ws)
	}
	g := v.arena.pages[i]
	if v.randn(100) < s.write {
		v.fillPage(g, v.rand())
	} else {
		v.fold(v.sumPage(g))
	}
	if v.steps.Load()%8 == 0 {
		v.peekShared()
	}
	v.ops.Add(1)
	return true
}

func (s *stress) encode(e *encoder) {
	e.u32(s.setup)
	e.u32(s.pos)
}

func (s *stress) decode(d *decoder) {
	s.setup = d.u32()
	s.pos = d.u32()
	d.check(int(s.setup) <= s.ws && int(s.pos) < s.ws, "stress: setup %d pos %d beyond working set %d", s.setup, s.pos, s.ws)
}
