package sim

import "math/rand"

// web serves requests: each step reads one static page drawn from a Zipf
// distribution over the hot set, and one request in 16 appends a record to
// the vCPU's log (its boot pages, used as a ring). Ops counts requests.
type web struct {
	zipf *rand.Zipf // draws from the vCPU's own PRNG state

	logPos uint64 // next log word
}

func newWebServer(v *vcpu) program {
	w := v.d.spec.Workload
	static := v.d.lay.static
	hot := len(static)
	if w.WorkingSet > 0 {
		hot = max(1, min(int(w.WorkingSet), hot))
	}
	s := w.ZipfS
	if s == 0 {
		s = 1.2
	}
	return &web{zipf: rand.NewZipf(rand.New(rngSource{&v.rng}), s, 1, uint64(hot-1))}
}

func (w *web) step(v *vcpu) bool {
	static := v.d.lay.static
	v.fold(v.sumPage(static[w.zipf.Uint64()]))
	if v.randn(16) == 0 {
		logWords := uint64(v.arena.boot) * wordsPerPage
		p := w.logPos % logWords
		v.write64(v.arena.pages[p/wordsPerPage], int(p%wordsPerPage), v.acc^v.steps.Load())
		w.logPos++
	}
	if v.steps.Load()%4 == 0 {
		v.peekShared()
	}
	v.ops.Add(1)
	return true
}

func (w *web) encode(e *encoder) { e.u64(w.logPos) }
func (w *web) decode(d *decoder) { w.logPos = d.u64() }
