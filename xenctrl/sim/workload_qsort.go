package sim

// qsortBudget is the number of element operations of one quicksort step.
const qsortBudget = 256

// qsort sorts the vCPU's own array of uint64, held in the first pages of its
// arena, with an explicit stack so that the sort advances a bounded amount
// per step and its whole state fits in the context. When the array is
// sorted it is refilled from the PRNG and sorted again. Ops counts element
// operations (compares, moves).
type qsort struct {
	pages int    // pages holding the array
	n     uint64 // elements

	setup  uint32   // pages allocated so far (warm-up)
	refill uint64   // next element to refill; n when sorting
	active bool     // a partition of [lo,hi] is in progress
	lo, hi uint64   // the range being partitioned
	i, j   uint64   // Lomuto indexes
	pivot  uint64   // value of a[hi]
	stack  []uint64 // pending ranges, (lo, hi) pairs
}

func newQuicksort(v *vcpu) program {
	q := &qsort{pages: perVCPU(v.d.spec.Workload.WorkingSet, len(v.d.vcpus), v.arena.boot, len(v.arena.pages))}
	q.n = uint64(q.pages) * wordsPerPage
	q.setup = uint32(min(q.pages, v.arena.boot))
	q.refill = q.n
	q.stack = []uint64{0, q.n - 1}
	return q
}

// get reads element k.
func (q *qsort) get(v *vcpu, k uint64) uint64 {
	return v.read64(v.arena.pages[k/wordsPerPage], int(k%wordsPerPage))
}

// set writes element k.
func (q *qsort) set(v *vcpu, k, x uint64) {
	v.write64(v.arena.pages[k/wordsPerPage], int(k%wordsPerPage), x)
}

func (q *qsort) swap(v *vcpu, a, b uint64) {
	x, y := q.get(v, a), q.get(v, b)
	q.set(v, a, y)
	q.set(v, b, x)
}

func (q *qsort) step(v *vcpu) bool {
	if int(q.setup) < q.pages {
		v.claimPage(int(q.setup))
		v.fillPage(v.arena.pages[q.setup], v.rand())
		q.setup++
		return true
	}
	var ops uint64
	for ops < qsortBudget {
		switch {
		case q.refill < q.n:
			q.set(v, q.refill, v.rand())
			q.refill++
			ops++
			if q.refill == q.n {
				q.stack = append(q.stack, 0, q.n-1)
			}
		case q.active:
			for q.j < q.hi && ops < qsortBudget {
				x := q.get(v, q.j)
				if x < q.pivot {
					q.swap(v, q.i, q.j)
					q.i++
				}
				q.j++
				ops++
			}
			if q.j == q.hi {
				q.swap(v, q.i, q.hi)
				q.active = false
				q.push(q.lo, q.i, q.hi)
			}
		case len(q.stack) > 0:
			lo, hi := q.stack[len(q.stack)-2], q.stack[len(q.stack)-1]
			q.stack = q.stack[:len(q.stack)-2]
			p := lo + v.randn(hi-lo+1)
			q.swap(v, p, hi)
			q.lo, q.hi, q.i, q.j = lo, hi, lo, lo
			q.pivot = q.get(v, hi)
			q.active = true
			ops++
		default:
			v.fold(q.get(v, q.n/2)) // sorted: keep a sample, start over
			q.refill = 0
		}
	}
	v.peekShared()
	v.ops.Add(ops)
	return true
}

// push queues the parts of [lo,hi] on either side of pivot index m that
// still need sorting, the larger first so that the stack stays O(log n).
func (q *qsort) push(lo, m, hi uint64) {
	type part struct{ lo, hi uint64 }
	var parts []part
	if m > lo+1 {
		parts = append(parts, part{lo, m - 1})
	}
	if m+1 < hi {
		parts = append(parts, part{m + 1, hi})
	}
	if len(parts) == 2 && parts[0].hi-parts[0].lo < parts[1].hi-parts[1].lo {
		parts[0], parts[1] = parts[1], parts[0]
	}
	for _, p := range parts {
		q.stack = append(q.stack, p.lo, p.hi)
	}
}

func (q *qsort) encode(e *encoder) {
	e.u32(q.setup)
	e.u64(q.refill)
	var active uint32
	if q.active {
		active = 1
	}
	e.u32(active)
	for _, x := range []uint64{q.lo, q.hi, q.i, q.j, q.pivot} {
		e.u64(x)
	}
	e.u64s(q.stack)
}

func (q *qsort) decode(d *decoder) {
	q.setup = d.u32()
	q.refill = d.u64()
	q.active = d.u32() != 0
	q.lo, q.hi, q.i, q.j, q.pivot = d.u64(), d.u64(), d.u64(), d.u64(), d.u64()
	q.stack = d.u64s()
	d.check(int(q.setup) <= q.pages && q.refill <= q.n && len(q.stack)%2 == 0, "qsort: bad state")
	d.check(!q.active || (q.lo <= q.i && q.i <= q.j && q.j <= q.hi && q.hi < q.n), "qsort: bad partition state")
	for _, x := range q.stack {
		d.check(x < q.n, "qsort: stack entry %d beyond array of %d", x, q.n)
	}
}
