package sim

// Phases of a kernel-compile job.
const (
	kcRead  = iota // read source files (static pages)
	kcAlloc        // allocate and write temporary pages
	kcWork         // read the temporaries back, update them
	kcEmit         // write an object file into the file cache
	kcFree         // zero and free the temporaries
	kcTrim         // shrink the file cache to its limit
)

// kcompile models a kernel build: each job reads sources, churns
// temporary allocations, and leaves an object file in a file cache that
// grows to half of the vCPU's free memory. Ops counts finished jobs.
type kcompile struct {
	cacheMax int

	phase uint32
	left  uint32   // pages left to read or allocate in this phase
	cur   uint32   // next temporary to work on
	temps []uint32 // arena indexes of this job's temporaries
	cache []uint32 // arena indexes of cached object files, oldest first
}

func newKernelCompile(v *vcpu) program {
	return &kcompile{cacheMax: (len(v.arena.pages) - v.arena.boot) / 2, left: 1}
}

func (k *kcompile) step(v *vcpu) bool {
	switch k.phase {
	case kcRead:
		static := v.d.lay.static
		v.fold(v.sumPage(static[v.randn(uint64(len(static)))]))
		if k.left--; k.left == 0 {
			k.phase, k.left = kcAlloc, uint32(4+v.randn(28))
		}
	case kcAlloc:
		if i, ok := v.allocPage(); ok {
			v.fillPage(v.arena.pages[i], v.rand())
			k.temps = append(k.temps, uint32(i))
		}
		if k.left--; k.left == 0 {
			k.phase, k.cur = kcWork, 0
		}
	case kcWork:
		if int(k.cur) < len(k.temps) {
			g := v.arena.pages[k.temps[k.cur]]
			v.fold(v.sumPage(g))
			v.write64(g, int(v.randn(wordsPerPage)), v.acc)
			k.cur++
		}
		if int(k.cur) >= len(k.temps) {
			k.phase = kcEmit
		}
		v.peekShared()
	case kcEmit:
		if i, ok := v.allocPage(); ok {
			v.fillPage(v.arena.pages[i], v.acc)
			k.cache = append(k.cache, uint32(i))
		}
		k.phase = kcFree
		v.ops.Add(1)
	case kcFree:
		if n := len(k.temps); n > 0 {
			v.freePage(int(k.temps[n-1]))
			k.temps = k.temps[:n-1]
		}
		if len(k.temps) == 0 {
			k.phase = kcTrim
		}
	case kcTrim:
		if len(k.cache) > k.cacheMax {
			v.freePage(int(k.cache[0]))
			k.cache = k.cache[1:]
		} else {
			k.phase, k.left = kcRead, uint32(2+v.randn(6))
		}
	}
	return true
}

func (k *kcompile) encode(e *encoder) {
	e.u32(k.phase)
	e.u32(k.left)
	e.u32(k.cur)
	e.u32s(k.temps)
	e.u32s(k.cache)
}

func (k *kcompile) decode(d *decoder) {
	k.phase, k.left, k.cur = d.u32(), d.u32(), d.u32()
	k.temps, k.cache = d.u32s(), d.u32s()
	d.check(k.phase <= kcTrim, "kcompile: phase %d", k.phase)
}
