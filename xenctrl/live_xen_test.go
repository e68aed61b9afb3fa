//go:build xen && linux

package xenctrl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
)

// These tests drive a real hypervisor. They need, as root in a PV dom0:
//
//	XENMIG_TEST_DOMAIN=<name>  a scratch HVM/PVH domain it may pause, read,
//	                           write one page of and, with the next variable,
//	                           page one gfn of
//	XENMIG_TEST_PAGING=1       also enable paging on it (needs a Xen built
//	                           with CONFIG_MEM_PAGING)
//
// See docs/XEN.md, "Testing on a real Xen host".

// liveHost is the domain XENMIG_TEST_DOMAIN names.
func liveHost(t *testing.T) (*Host, hypervisor.DomID) {
	t.Helper()
	return domainFromEnv(t, "XENMIG_TEST_DOMAIN", "a scratch domain")
}

// domainFromEnv opens the hypervisor and looks up the domain the variable
// env names, or skips the test or benchmark, saying it requires what.
func domainFromEnv(tb testing.TB, env, what string) (*Host, hypervisor.DomID) {
	tb.Helper()
	if !haveXen() {
		tb.Skip("requires a Xen host: /dev/xen/privcmd not present")
	}
	name := os.Getenv(env)
	if name == "" {
		tb.Skipf("requires %s: set %s to its name", what, env)
	}
	h, err := Open()
	if err != nil {
		tb.Fatalf("Open() = %v", err)
	}
	tb.Cleanup(func() { h.Close() })
	d, err := h.Lookup(name)
	if err != nil {
		tb.Fatalf("Lookup(%q) = %v", name, err)
	}
	return h, d
}

func TestLiveInfo(t *testing.T) {
	h, d := liveHost(t)
	info, err := h.Info(d)
	if err != nil || info.ID != d || info.MaxPages == 0 {
		t.Fatalf("Info(%d) = %+v, %v", d, info, err)
	}
	if _, err := h.Info(0x7fee); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("Info(0x7fee) = %v, want ErrNotFound", err)
	}
	doms, err := h.Domains()
	if err != nil || len(doms) == 0 {
		t.Errorf("Domains() = %d domains, %v", len(doms), err)
	}
	path, err := h.DomainPath(d)
	if want := fmt.Sprintf("/local/domain/%d", d); err != nil || path != want {
		t.Errorf("DomainPath(%d) = %q, %v; want %q", d, path, err, want)
	}
	r := Doctor(info.Name)
	t.Logf("doctor:\n%s", r)
	if !r.Reachable || r.Guest == nil || !r.Guest.Found {
		t.Errorf("Doctor(%q) = %+v", info.Name, r)
	}
}

func TestLiveMemory(t *testing.T) {
	h, d := liveHost(t)
	if err := h.Pause(d); err != nil {
		t.Fatalf("Pause(%d) = %v", d, err)
	}
	defer h.Unpause(d)
	pop, err := h.Populated(d)
	if err != nil || pop.Count() == 0 {
		t.Fatalf("Populated(%d) = %v, %v", d, pop, err)
	}
	g := pop.GFNs()[0]
	page := make([]byte, hypervisor.PageSize)
	if err := h.ReadPages(d, []hypervisor.GFN{g}, page); err != nil {
		t.Fatalf("ReadPages(%#x) = %v", uint64(g), err)
	}
	if err := h.WritePages(d, []hypervisor.GFN{g}, page); err != nil {
		t.Fatalf("WritePages(%#x) = %v", uint64(g), err)
	}
	back := make([]byte, hypervisor.PageSize)
	if err := h.ReadPages(d, []hypervisor.GFN{g}, back); err != nil || !bytes.Equal(back, page) {
		t.Errorf("ReadPages after WritePages = %v, same %v", err, bytes.Equal(back, page))
	}
	s, err := h.SaveCPU(d)
	if err != nil || len(s.HVMContext) == 0 {
		t.Fatalf("SaveCPU(%d) = %d bytes, %v", d, len(s.HVMContext), err)
	}
	if err := h.RestoreCPU(d, s); err != nil {
		t.Errorf("RestoreCPU(%d, its own state) = %v", d, err)
	}
	if err := h.EnableLogDirty(d); err != nil {
		t.Fatalf("EnableLogDirty(%d) = %v", d, err)
	}
	if err := h.WritePages(d, []hypervisor.GFN{g}, page); err != nil {
		t.Fatalf("WritePages = %v", err)
	}
	dirty, err := h.DirtyLog(d, true)
	if err != nil {
		t.Errorf("DirtyLog(%d, clean) = %v", d, err)
	} else {
		t.Logf("dirty after one foreign write: %d pages (gfn %#x set: %v)", dirty.Count(), uint64(g), dirty.Test(g))
	}
	if err := h.DisableLogDirty(d); err != nil {
		t.Errorf("DisableLogDirty(%d) = %v", d, err)
	}
}

func TestLiveStore(t *testing.T) {
	h, d := liveHost(t)
	key := fmt.Sprintf("/local/domain/%d/data/xenmig-test", d)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch, err := h.StoreWatch(ctx, key)
	if err != nil {
		t.Fatalf("StoreWatch(%q) = %v", key, err)
	}
	if p := <-ch; p != key {
		t.Errorf("first watch event = %q, want %q", p, key)
	}
	if err := h.StoreWrite(key, "42"); err != nil {
		t.Fatalf("StoreWrite = %v", err)
	}
	if p := <-ch; p != key {
		t.Errorf("watch event after write = %q, want %q", p, key)
	}
	if v, err := h.StoreRead(key); err != nil || v != "42" {
		t.Errorf("StoreRead = %q, %v; want 42", v, err)
	}
	if err := h.StoreRemove(key); err != nil {
		t.Errorf("StoreRemove = %v", err)
	}
	if _, err := h.StoreRead(key); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("StoreRead after remove = %v, want ErrNotFound", err)
	}
	cancel()
	for range ch {
	}
}

// TestLivePaging evicts one gfn of the scratch domain, lets the guest fault
// on it (or loads it back unasked) and detaches.
func TestLivePaging(t *testing.T) {
	h, d := liveHost(t)
	if os.Getenv("XENMIG_TEST_PAGING") != "1" {
		t.Skip("set XENMIG_TEST_PAGING=1 to page a gfn of the scratch domain")
	}
	pg, err := h.EnablePaging(d)
	if errors.Is(err, hypervisor.ErrPagingUnsupported) {
		t.Skipf("this Xen has no mem_paging: %v", err)
	}
	if err != nil {
		t.Fatalf("EnablePaging(%d) = %v", d, err)
	}
	if _, err := h.EnablePaging(d); !errors.Is(err, hypervisor.ErrBusy) {
		t.Errorf("second EnablePaging = %v, want ErrBusy", err)
	}
	pop, err := h.Populated(d)
	if err != nil {
		t.Fatal(err)
	}
	gfns := pop.GFNs()
	g := gfns[len(gfns)/2]
	page := make([]byte, hypervisor.PageSize)
	if err := h.ReadPages(d, []hypervisor.GFN{g}, page); err != nil {
		t.Fatal(err)
	}
	if err := pg.Nominate(g); err != nil {
		t.Fatalf("Nominate(%#x) = %v", uint64(g), err)
	}
	if err := pg.Evict(g); err != nil && !errors.Is(err, hypervisor.ErrBusy) {
		t.Fatalf("Evict(%#x) = %v", uint64(g), err)
	}
	if err := h.ReadPages(d, []hypervisor.GFN{g}, make([]byte, hypervisor.PageSize)); !errors.Is(err, hypervisor.ErrPaged) {
		t.Logf("ReadPages of an evicted gfn = %v (want ErrPaged unless the guest raced us)", err)
	}
	if err := pg.Load(g, page); err != nil {
		t.Errorf("Load(%#x) = %v", uint64(g), err)
	}
	// Answer whatever the guest and our foreign read posted.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	for {
		reqs, err := pg.Requests(ctx)
		if err != nil {
			break
		}
		if err := pg.Resume(reqs...); err != nil {
			t.Errorf("Resume(%v) = %v", reqs, err)
		}
	}
	cancel()
	if err := pg.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
}

func TestLiveConfigPolicySuspend(t *testing.T) {
	h, d := liveHost(t)
	t.Log("cpu policy")
	pol, err := h.cpuPolicyOf(d)
	if err != nil || len(pol) < 8 {
		t.Fatalf("cpuPolicyOf(%d) = %d bytes, %v", d, len(pol), err)
	}
	t.Log("special pages")
	sp, err := h.specialPages(d)
	if err != nil || len(sp) != 2 {
		t.Errorf("specialPages(%d) = %#x, %v; want console and store gfns", d, sp, err)
	}
	t.Log("libxl config")
	js, err := h.configJSON(d)
	if err != nil || !isJSONConfig(js) {
		t.Fatalf("configJSON(%d) = %.80q, %v", d, js, err)
	}
	t.Logf("config: %d bytes of JSON, policy %d bytes, special %#x", len(js), len(pol), sp)
	if os.Getenv("XENMIG_TEST_SUSPEND") == "" {
		return
	}
	start := time.Now()
	if err := h.Suspend(context.Background(), d, time.Minute); err != nil {
		t.Fatalf("Suspend(%d) = %v", d, err)
	}
	t.Logf("suspended in %v", time.Since(start))
	if info, err := h.Info(d); err != nil || info.State != hypervisor.StateSuspended {
		t.Errorf("Info after Suspend = %v, %v; want suspended", info.State, err)
	}
	if err := h.CancelSuspend(d); err != nil {
		t.Fatalf("CancelSuspend(%d) = %v", d, err)
	}
	if info, err := h.Info(d); err != nil || info.State == hypervisor.StateSuspended {
		t.Errorf("Info after CancelSuspend = %v, %v; want running", info.State, err)
	}
}
