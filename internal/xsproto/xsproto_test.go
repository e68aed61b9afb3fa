package xsproto

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"reflect"
	"sync"
	"syscall"
	"testing"
	"time"
)

// serve starts a Server for domain 7 on a unix socket in a temp dir and
// returns it with a connected Client.
func serve(t *testing.T) (*Server, *Client) {
	t.Helper()
	s := NewServer(7)
	sock := filepath.Join(t.TempDir(), "xs.sock")
	if err := s.ListenUnix(sock); err != nil {
		t.Fatal(err)
	}
	c, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	c.Timeout = 5 * time.Second
	t.Cleanup(func() {
		c.Close()
		s.Close()
	})
	return s, c
}

func TestMsgRoundTrip(t *testing.T) {
	for _, m := range []Msg{
		{Type: TypeRead, ReqID: 1, Payload: cjoin("memory/target")},
		{Type: TypeWrite, ReqID: 0xffffffff, TxID: 3, Payload: []byte("a\x00b")},
		{Type: TypeError, Payload: []byte{}},
	} {
		var b bytes.Buffer
		if err := WriteMsg(&b, m); err != nil {
			t.Fatalf("WriteMsg(%+v) = %v", m, err)
		}
		if got, want := b.Len(), HeaderSize+len(m.Payload); got != want {
			t.Errorf("WriteMsg(%+v) wrote %d bytes, want %d", m, got, want)
		}
		got, err := ReadMsg(&b)
		if err != nil {
			t.Fatalf("ReadMsg = %v", err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("ReadMsg(WriteMsg(%+v)) = %+v", m, got)
		}
	}
	if err := WriteMsg(&bytes.Buffer{}, Msg{Payload: make([]byte, PayloadMax+1)}); !errors.Is(err, ErrTooBig) {
		t.Errorf("WriteMsg(4097 bytes) = %v, want ErrTooBig", err)
	}
	hdr := make([]byte, HeaderSize)
	hdr[12], hdr[13] = 0x01, 0x10 // 0x1001 in either byte order is > 4096
	if _, err := ReadMsg(bytes.NewReader(hdr)); !errors.Is(err, ErrTooBig) {
		t.Errorf("ReadMsg(len 0x1001) = %v, want ErrTooBig", err)
	}
}

func TestCStrings(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"a\x00", []string{"a"}},
		{"a\x00b\x00", []string{"a", "b"}},
		{"a\x00b", []string{"a", "b"}},
		{"\x00", []string{""}},
	} {
		if got := cstrings([]byte(tt.in)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("cstrings(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestReadWrite(t *testing.T) {
	s, c := serve(t)
	if err := c.Write("memory/target", "524288"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"memory/target", "/local/domain/7/memory/target"} {
		if got, err := c.Read(p); err != nil || got != "524288" {
			t.Errorf("Read(%q) = %q, %v, want 524288", p, got, err)
		}
	}
	if got, err := s.Read("/local/domain/7/memory/target"); err != nil || got != "524288" {
		t.Errorf("Server.Read = %q, %v, want 524288", got, err)
	}
	// Parents exist, with empty values.
	if got, err := c.Read("memory"); err != nil || got != "" {
		t.Errorf("Read(memory) = %q, %v, want empty", got, err)
	}
	// Values may hold anything but NUL-free paths; empty values are fine.
	if err := c.Write("data/empty", ""); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Read("data/empty"); err != nil || got != "" {
		t.Errorf("Read(data/empty) = %q, %v, want empty", got, err)
	}
	names, err := c.Directory("/local/domain/7")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"data", "memory"}; !reflect.DeepEqual(names, want) {
		t.Errorf("Directory = %q, want %q", names, want)
	}
	dp, err := c.DomainPath(7)
	if err != nil || dp != "/local/domain/7" {
		t.Errorf("DomainPath(7) = %q, %v", dp, err)
	}
}

func TestErrors(t *testing.T) {
	_, c := serve(t)
	_, err := c.Read("no/such/key")
	if !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, syscall.ENOENT) {
		t.Errorf("Read(missing) = %v, want ENOENT", err)
	}
	var xe *Error
	if !errors.As(err, &xe) || xe.Name != "ENOENT" {
		t.Errorf("Read(missing) = %#v, want *Error ENOENT", err)
	}
	if err := c.Write("bad//path", "x"); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("Write(bad//path) = %v, want EINVAL", err)
	}
	if _, err := c.request(TypeTransactionStart, cjoin("")); !errors.Is(err, syscall.ENOSYS) {
		t.Errorf("transaction start = %v, want ENOSYS", err)
	}
	// The connection survives errors.
	if err := c.Write("a", "b"); err != nil {
		t.Errorf("Write after errors = %v", err)
	}
	if err := c.Rm("a"); err != nil {
		t.Errorf("Rm(a) = %v", err)
	}
	if _, err := c.Read("a"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Read after Rm = %v, want ENOENT", err)
	}
	if err := c.Rm("a"); err != nil {
		t.Errorf("Rm(missing, parent exists) = %v, want nil", err)
	}
	if err := c.Rm("x/y/z"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Rm(missing parent) = %v, want ENOENT", err)
	}
	c.Close()
	if _, err := c.Read("a"); !errors.Is(err, ErrClosed) {
		t.Errorf("Read after Close = %v, want ErrClosed", err)
	}
}

func TestDialMissing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "xenbus")
	if _, err := Dial(p); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Dial(%s) = %v, want fs.ErrNotExist", p, err)
	}
	if _, _, err := DialFirst(p, p+"2"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("DialFirst = %v, want fs.ErrNotExist", err)
	}
}

// next returns the next event or fails after a while.
func next(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case p, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no watch event")
	}
	return ""
}

func TestWatch(t *testing.T) {
	s, c := serve(t)
	ctx, cancel := context.WithCancel(context.Background())
	rel, err := c.Watch(ctx, "control/xenmig")
	if err != nil {
		t.Fatal(err)
	}
	abs, err := c.Watch(ctx, "/local/domain/7/control/xenmig/migrate")
	if err != nil {
		t.Fatal(err)
	}
	// One event for the path itself on registration.
	if got := next(t, rel); got != "control/xenmig" {
		t.Errorf("initial relative event = %q", got)
	}
	if got := next(t, abs); got != "/local/domain/7/control/xenmig/migrate" {
		t.Errorf("initial absolute event = %q", got)
	}
	// A dom0-side write fires both; relative watches see relative paths.
	if err := s.Write("/local/domain/7/control/xenmig/migrate", "squeeze 1"); err != nil {
		t.Fatal(err)
	}
	if got := next(t, rel); got != "control/xenmig/migrate" {
		t.Errorf("relative event = %q", got)
	}
	if got := next(t, abs); got != "/local/domain/7/control/xenmig/migrate" {
		t.Errorf("absolute event = %q", got)
	}
	// A write elsewhere does not fire; rm of a parent fires the child watch.
	if err := c.Write("data/other", "1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rm("control"); err != nil {
		t.Fatal(err)
	}
	if got := next(t, rel); got != "control/xenmig" {
		t.Errorf("rm event on relative watch = %q, want control/xenmig", got)
	}
	if got := next(t, abs); got != "/local/domain/7/control/xenmig/migrate" {
		t.Errorf("rm event on child watch = %q", got)
	}
	// Cancelling closes the channels and unregisters the watches.
	cancel()
	for _, ch := range []<-chan string{rel, abs} {
		for range ch {
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		n := len(s.watches)
		s.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d watches still registered after cancel", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Requests still work.
	if _, err := c.Read("data/other"); err != nil {
		t.Errorf("Read after unwatch = %v", err)
	}
}

// TestWatchSlowReader checks that undelivered events neither block requests
// nor grow without bound: identical pending paths coalesce.
func TestWatchSlowReader(t *testing.T) {
	_, c := serve(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := c.Watch(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 500; i++ {
		if err := c.Write("k", "v"); err != nil {
			t.Fatalf("Write %d = %v", i, err)
		}
	}
	// At most: the event the pump holds, and one coalesced behind it.
	n := 0
	for quiet := false; !quiet; {
		select {
		case p := <-ch:
			n++
			if p != "k" {
				t.Errorf("event = %q, want k", p)
			}
		case <-time.After(100 * time.Millisecond):
			quiet = true
		}
	}
	if n == 0 || n > 2 {
		t.Errorf("got %d events for 501 changes, want 1 or 2 after coalescing", n)
	}
}

func TestConnectionLossClosesWatch(t *testing.T) {
	s, c := serve(t)
	ch, err := c.Watch(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	next(t, ch)
	s.Close()
	select {
	case _, ok := <-ch:
		if ok {
			for range ch {
			}
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch channel not closed after server went away")
	}
	if _, err := c.Read("k"); err == nil {
		t.Error("Read after server close succeeded")
	}
}

func TestConcurrentClients(t *testing.T) {
	s, c := serve(t)
	_ = s
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			key := "data/k" + string(rune('a'+i))
			for j := 0; j < 50; j++ {
				if err := c.Write(key, key); err != nil {
					t.Errorf("Write(%s) = %v", key, err)
					return
				}
				if got, err := c.Read(key); err != nil || got != key {
					t.Errorf("Read(%s) = %q, %v", key, got, err)
					return
				}
			}
		}(i)
	}
	wg.Wait()
}
