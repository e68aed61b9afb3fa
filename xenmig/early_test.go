package xenmig

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/xenmig/xenmig/hypervisor"
	"github.com/xenmig/xenmig/xenmig/internal/wire"
)

// pageWriter is a Hypervisor that records what WritePages wrote.
type pageWriter struct {
	hypervisor.Hypervisor
	pages map[hypervisor.GFN][]byte
}

func (h *pageWriter) WritePages(_ hypervisor.DomID, gfns []hypervisor.GFN, src []byte) error {
	for i, g := range gfns {
		h.pages[g] = bytes.Clone(src[i*hypervisor.PageSize : (i+1)*hypervisor.PageSize])
	}
	return nil
}

// TestPreparerInstall: an early batch's pages are written where the
// evictor has not been, zero ones as zeros (over the builder's bytes),
// held where it has been or still is (without waiting for it), and skipped
// for special gfns and duplicates, whatever their order in the batch: each
// gfn gets its own page. At the pause, a held page whose gfn paging could
// not take is dropped (the source sends it again in the downtime) and the
// rest are owed to the installer.
func TestPreparerInstall(t *testing.T) {
	const n = 32
	h := &pageWriter{pages: map[hypervisor.GFN][]byte{}}
	out := hypervisor.NewBitmap(n)
	for g := hypervisor.GFN(0); g < n; g++ {
		if g != 3 { // special
			out.Set(g)
		}
	}
	p := newPreparer(&receiver{hv: h, dom: 1}, out, time.Now())
	for _, g := range []hypervisor.GFN{9, 12, 20, 25} { // paged out already, or (25) being paged out
		p.taken.claim(g)
		if g != 25 {
			p.evicted.claim(g)
		}
	}
	page := func(g hypervisor.GFN) []byte { return bytes.Repeat([]byte{byte(g) + 1}, hypervisor.PageSize) }
	batch := func(gfns []hypervisor.GFN, zero []bool) wire.Pages {
		b := wire.Pages{GFNs: gfns, Zero: zero}
		for i, g := range gfns {
			if !zero[i] {
				b.Data = append(b.Data, page(g)...)
			}
		}
		return b
	}
	batches := []wire.Pages{
		// In order: the written pages are the record's own.
		batch([]hypervisor.GFN{0, 1, 2, 4}, []bool{false, true, false, false}),
		// A special page, a late one and a duplicate before pages written.
		batch([]hypervisor.GFN{5, 3, 6, 9, 7, 0, 8, 12, 10, 13},
			[]bool{false, false, true, false, false, false, false, true, false, true}),
		// Only late pages and zero pages.
		batch([]hypervisor.GFN{20, 21, 22, 25}, []bool{false, true, true, false}),
	}
	for i, b := range batches {
		if err := p.install(b); err != nil {
			t.Fatalf("install(batch %d) = %v", i, err)
		}
	}
	zero := make([]byte, hypervisor.PageSize)
	want := map[hypervisor.GFN][]byte{0: page(0), 1: zero, 2: page(2), 4: page(4), 5: page(5), 6: zero,
		7: page(7), 8: page(8), 10: page(10), 13: zero, 21: zero, 22: zero}
	if len(h.pages) != len(want) {
		t.Errorf("wrote %d pages, want %d", len(h.pages), len(want))
	}
	for g, w := range want {
		if got, ok := h.pages[g]; !ok || !bytes.Equal(got, w) {
			t.Errorf("gfn %d: written %t, page[0] %v; want page[0] %d", g, ok, got[:min(1, len(got))], w[0])
		}
	}
	if d := p.late[9]; !bytes.Equal(d, page(9)) {
		t.Errorf("late[9] = %d bytes, want gfn 9's page held", len(d))
	}
	if _, ok := p.late[20]; !ok || !p.lateZero.test(12) || len(p.late) != 3 || p.lateZero.count() != 1 {
		t.Errorf("held %d late pages and %d zero ones, want 9, 20 and 25, and 12 as zero", len(p.late), p.lateZero.count())
	}

	// The evictor is done; 20 was one paging could not take.
	p.evicted.claim(25)
	p.busy.claim(20)
	close(p.done)
	populated := out.Clone()
	populated.Set(3)
	log := logrus.New()
	log.SetOutput(io.Discard)
	p.r.direct, p.r.log = hypervisor.NewBitmap(n), logrus.NewEntry(log)
	p.r.direct.Set(20)
	kept, late, lateZero, busy, err := p.finish(populated, nil)
	if err != nil {
		t.Fatalf("finish() = %v", err)
	}
	if _, ok := late[20]; ok || len(late) != 2 || lateZero.Count() != 1 || len(busy) != 0 {
		t.Errorf("finish() held %d late pages (20 among them: %t), %d zero, %d busy; want 9 and 25, 12 as zero, none busy",
			len(late), ok, lateZero.Count(), len(busy))
	}
	if got := kept.Count(); got != uint64(len(want)) {
		t.Errorf("finish() kept %d gfns, want the %d written", got, len(want))
	}
}

// evictOrder is a Pager that records the gfns it pages out, in order.
type evictOrder struct {
	hypervisor.Pager
	evicted []hypervisor.GFN
}

func (e *evictOrder) Nominate(hypervisor.GFN) error { return nil }
func (e *evictOrder) Evict(g hypervisor.GFN) error {
	e.evicted = append(e.evicted, g)
	return nil
}

// evictingPreparer returns a preparer of out whose receiver records what it
// pages out (pager) and what it sends on main (sent).
func evictingPreparer(out *hypervisor.Bitmap) (*preparer, *evictOrder, *bytes.Buffer) {
	pager, sent := &evictOrder{}, &bytes.Buffer{}
	log := logrus.New()
	log.SetOutput(io.Discard)
	r := &receiver{pager: pager, direct: hypervisor.NewBitmap(out.Len()), log: logrus.NewEntry(log),
		links: &links{main: &conn{w: wire.NewWriter(sent)}}}
	return newPreparer(r, out, time.Now()), pager, sent
}

// TestPreparerHotFirst: the gfns the source names hot are paged out first,
// in the order named, then the rest top down; gfns early pages took and
// special ones are never paged out; and prepared goes to the source.
func TestPreparerHotFirst(t *testing.T) {
	const n = 200
	out := hypervisor.NewBitmap(n)
	for g := hypervisor.GFN(0); g < n; g++ {
		if g != 150 { // special
			out.Set(g)
		}
	}
	p, pager, sent := evictingPreparer(out)
	for g := hypervisor.GFN(0); g < 100; g++ {
		p.taken.claim(g) // written from early pages
	}
	hot := []hypervisor.GFN{120, 7, 150, 180} // 7: taken early first; 150: special
	if err := p.hint(hot); err != nil {
		t.Fatalf("hint(%v) = %v", hot, err)
	}
	if err := p.hint([]hypervisor.GFN{n}); !errors.Is(err, wire.ErrMalformed) {
		t.Errorf("hint(gfn %d of %d) = %v, want ErrMalformed", n, n, err)
	}
	p.evict(context.Background())
	if p.err != nil {
		t.Fatalf("evict: %v", p.err)
	}
	want := []hypervisor.GFN{120, 180}
	for g := hypervisor.GFN(n - 1); g >= 100; g-- {
		if g != 120 && g != 180 && g != 150 {
			want = append(want, g)
		}
	}
	if !slices.Equal(pager.evicted, want) {
		t.Errorf("paged out %v\nwant %v", pager.evicted, want)
	}
	if typ, _, err := wire.NewReader(sent).Read(); err != nil || typ != wire.TypePrepared {
		t.Errorf("sent %v, %v; want prepared", typ, err)
	}
}

// TestEvictPace: the evictor waits for the early push only once it has
// measured its own pace, and only while early records cover gfns faster
// than it would page them out and load them again (pagedCost evicts each)
// and have not gone quiet.
func TestEvictPace(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := func(f float64) time.Time { return t0.Add(time.Duration(f * float64(time.Millisecond))) }
	// At 1.5 µs an evict and pagedCost evicts a gfn paged out, the push
	// breaks even at 1/7.5 µs: 267 gfns in 2 ms.
	for _, tc := range []struct {
		name    string
		paged   int           // gfns paged out, at 1.5 µs each
		covered uint64        // early gfns over the first 2 ms
		at      time.Time     // when asked
		want    time.Duration // from the last look
	}{
		{"not measured yet", learnGFNs - 1, 2000, ms(2), 0},
		{"early faster", learnGFNs, 2000, ms(2), paceWait},
		{"early as fast", learnGFNs, 270, ms(2), paceWait},
		{"early slower than evicts, faster than evicts and loads", learnGFNs, 1000, ms(2), paceWait},
		{"early slower", learnGFNs, 200, ms(2), 0},
		{"early quiet a while", learnGFNs, 2000, ms(2 + 9), paceWait},
		{"early gone quiet", learnGFNs, 2000, ms(2 + 10.5), 0},
		{"no early page", learnGFNs, 0, ms(2), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e evictPace
			e.paged(tc.paged, time.Duration(tc.paged)*1500*time.Nanosecond)
			e.yield(0, t0)
			e.yield(tc.covered, ms(2))
			if got := e.yield(tc.covered, tc.at); got != tc.want {
				t.Errorf("yield = %v, want %v (rate %.0f gfns/s, %.2f µs a gfn)", got, tc.want, e.rate, e.perGFN()*1e6)
			}
		})
	}
}

// TestPreparerWalked: once the source pushes early, the evictor tells it how
// far down its walk has come, every streamChunk gfns it pages out, so that
// the early push stops there; every gfn from the told one up is taken.
func TestPreparerWalked(t *testing.T) {
	const n = 4 * streamChunk
	out := hypervisor.NewBitmap(n)
	for g := hypervisor.GFN(0); g < n; g++ {
		out.Set(g)
	}
	p, _, sent := evictingPreparer(out)
	for g := hypervisor.GFN(0); g < streamChunk; g++ {
		p.taken.claim(g) // written from early pages: the source pushes early
	}
	p.covered.Add(streamChunk)
	p.evict(context.Background())
	if p.err != nil {
		t.Fatalf("evict: %v", p.err)
	}
	rd := wire.NewReader(sent)
	var told []hypervisor.GFN
	for {
		typ, body, err := rd.Read()
		if err != nil {
			t.Fatalf("read what the evictor sent: %v", err)
		}
		if typ == wire.TypePrepared {
			break
		}
		g, err := wire.UnmarshalGFNs(body)
		if typ != wire.TypeWalked || err != nil || len(g) != 1 {
			t.Fatalf("sent %v %v (%v), want walked with one gfn, then prepared", typ, g, err)
		}
		told = append(told, g[0])
	}
	want := []hypervisor.GFN{3 * streamChunk, 2 * streamChunk, streamChunk}
	if !slices.Equal(told, want) {
		t.Errorf("walked %v, want %v", told, want)
	}
	for _, g := range told {
		for h := g; h < n; h++ {
			if !p.taken.test(h) {
				t.Errorf("walked %#x told before gfn %#x was taken", uint64(g), uint64(h))
				break
			}
		}
	}
}

// TestChunks: pushers taking chunks side by side get every gfn once, each
// chunk in order, and none at or above the ceiling.
func TestChunks(t *testing.T) {
	const n = 10*streamChunk + 100
	set := hypervisor.NewBitmap(n)
	for g := hypervisor.GFN(0); g < n; g += 3 {
		set.Set(g)
	}
	for _, tc := range []struct {
		name    string
		ceiling hypervisor.GFN // lowered before the push; n: never
		takers  int
	}{
		{"one pusher", n, 1},
		{"four pushers", n, 4},
		{"ceiling mid-chunk", 5*streamChunk + 7, 3},
		{"ceiling at 0", 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newChunks(set.Words())
			c.lower(tc.ceiling)
			c.lower(n + 64) // never raises it
			got := make([][]hypervisor.GFN, tc.takers)
			done := make(chan int)
			for i := range tc.takers {
				go func() {
					for g := range c.all() {
						got[i] = append(got[i], g)
					}
					done <- i
				}()
			}
			var all []hypervisor.GFN
			for range tc.takers {
				i := <-done
				if !slices.IsSorted(got[i]) {
					t.Errorf("pusher %d got gfns out of order", i)
				}
				all = append(all, got[i]...)
			}
			slices.Sort(all)
			var want []hypervisor.GFN
			for _, g := range set.GFNs() {
				if g < tc.ceiling {
					want = append(want, g)
				}
			}
			if !slices.Equal(all, want) {
				t.Errorf("pushers got %d gfns, want %d (each once, below %#x)", len(all), len(want), uint64(tc.ceiling))
			}
		})
	}
}
