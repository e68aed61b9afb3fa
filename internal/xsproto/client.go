package xsproto

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// GuestPaths are where a domU reaches xenstore, in the order DialFirst tries
// them: the xenbus device of the Linux kernel (CONFIG_XEN, devtmpfs) and the
// older xenfs file (CONFIG_XENFS, xenfs mounted on /proc/xen).
var GuestPaths = []string{"/dev/xen/xenbus", "/proc/xen/xenbus"}

// HostPaths are where xenstored listens in dom0.
var HostPaths = []string{"/run/xenstored/socket", "/var/run/xenstored/socket"}

// DefaultTimeout bounds one request of a Client made by Dial or NewClient.
const DefaultTimeout = 30 * time.Second

// ErrClosed is returned by requests on a closed Client.
var ErrClosed = errors.New("xenstore connection closed")

// Client is a xenstore connection. It keeps one request in flight at a time
// (as libxenstore does on a single handle), which also makes it correct on
// kernels whose xenbus device does not echo req_id. Watch events are read
// concurrently and queued per watch, so a slow watcher never blocks requests.
//
// Client methods are safe for concurrent use.
type Client struct {
	// Timeout bounds each request; a request that times out closes the
	// connection, since a late reply would be taken for the next one.
	// Zero means no bound.
	Timeout time.Duration

	conn io.ReadWriteCloser

	reqMu sync.Mutex // one request in flight

	mu       sync.Mutex
	nextReq  uint32
	nextTok  uint64
	inflight chan Msg
	watches  map[string]*watch // by token
	err      error             // set once the connection is down
	done     chan struct{}
}

// Dial connects to xenstore at path: a unix socket (xenstored, or Server) or
// a device/file speaking the protocol (/dev/xen/xenbus). A missing path
// fails with an error that matches fs.ErrNotExist.
func Dial(path string) (*Client, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("xenstore at %s: %w", path, err)
	}
	var conn io.ReadWriteCloser
	if st.Mode()&fs.ModeSocket != 0 {
		c, err := net.Dial("unix", path)
		if err != nil {
			return nil, fmt.Errorf("xenstore socket %s: %w", path, err)
		}
		conn = c
	} else {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("xenstore device %s: %w", path, err)
		}
		conn = f
	}
	return NewClient(conn), nil
}

// DialFirst dials the first of paths that exists. If none exists the error
// matches fs.ErrNotExist and names every path tried.
func DialFirst(paths ...string) (*Client, string, error) {
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		c, err := Dial(p)
		return c, p, err
	}
	return nil, "", fmt.Errorf("no xenstore at any of %q: %w", paths, fs.ErrNotExist)
}

// NewClient runs the protocol over conn, which it owns from now on.
func NewClient(conn io.ReadWriteCloser) *Client {
	c := &Client{
		Timeout: DefaultTimeout,
		conn:    conn,
		watches: make(map[string]*watch),
		done:    make(chan struct{}),
	}
	go c.readLoop()
	return c
}

// Close closes the connection; pending requests fail with ErrClosed and
// watch channels are closed.
func (c *Client) Close() error {
	c.fail(ErrClosed)
	return nil
}

// fail takes the connection down with err, once.
func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	ws := c.watches
	c.watches = map[string]*watch{}
	close(c.done)
	c.mu.Unlock()
	c.conn.Close()
	for _, w := range ws {
		w.close()
	}
}

func (c *Client) readLoop() {
	for {
		m, err := ReadMsg(c.conn)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				err = ErrClosed
			}
			c.fail(fmt.Errorf("xenstore read: %w", err))
			return
		}
		if m.Type == TypeWatchEvent {
			f := cstrings(m.Payload)
			if len(f) < 2 {
				continue
			}
			c.mu.Lock()
			w := c.watches[f[1]]
			c.mu.Unlock()
			if w != nil {
				w.push(f[0])
			}
			continue
		}
		c.mu.Lock()
		ch := c.inflight
		c.inflight = nil
		c.mu.Unlock()
		if ch != nil {
			ch <- m // buffered, one reply per request
		}
	}
}

// request sends one message and waits for its reply; XS_ERROR becomes *Error.
func (c *Client) request(t Type, payload []byte) ([]byte, error) {
	if len(payload) > PayloadMax {
		return nil, fmt.Errorf("%v: %w", t, ErrTooBig)
	}
	c.reqMu.Lock()
	defer c.reqMu.Unlock()

	ch := make(chan Msg, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.nextReq++
	id := c.nextReq
	c.inflight = ch
	c.mu.Unlock()

	if err := WriteMsg(c.conn, Msg{Type: t, ReqID: id, Payload: payload}); err != nil {
		c.fail(err)
		return nil, err
	}
	var timeout <-chan time.Time
	if c.Timeout > 0 {
		tm := time.NewTimer(c.Timeout)
		defer tm.Stop()
		timeout = tm.C
	}
	select {
	case m := <-ch:
		if m.Type == TypeError {
			f := cstrings(m.Payload)
			name := "EIO"
			if len(f) > 0 {
				name = f[0]
			}
			return nil, &Error{Name: name}
		}
		if m.Type != t {
			err := fmt.Errorf("%v: reply of type %v", t, m.Type)
			c.fail(err)
			return nil, err
		}
		return m.Payload, nil
	case <-c.done:
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		return nil, err
	case <-timeout:
		err := fmt.Errorf("%v: no reply within %v", t, c.Timeout)
		c.fail(err)
		return nil, err
	}
}

// Read returns the value of path. Relative paths ("memory/target") are
// relative to the caller's domain home, /local/domain/<domid>. A missing
// key fails with an *Error matching fs.ErrNotExist.
func (c *Client) Read(path string) (string, error) {
	p, err := c.request(TypeRead, cjoin(path))
	if err != nil {
		return "", fmt.Errorf("xenstore read %s: %w", path, err)
	}
	// xenstored sends the value without a NUL; tolerate one.
	if n := len(p); n > 0 && p[n-1] == 0 {
		p = p[:n-1]
	}
	return string(p), nil
}

// Write sets path to value, creating it and missing parents.
func (c *Client) Write(path, value string) error {
	pl := append(cjoin(path), value...)
	if _, err := c.request(TypeWrite, pl); err != nil {
		return fmt.Errorf("xenstore write %s: %w", path, err)
	}
	return nil
}

// Rm removes path and everything below it. Removing a missing key whose
// parent exists succeeds, as in xenstored.
func (c *Client) Rm(path string) error {
	if _, err := c.request(TypeRm, cjoin(path)); err != nil {
		return fmt.Errorf("xenstore rm %s: %w", path, err)
	}
	return nil
}

// Directory lists the names of the children of path.
func (c *Client) Directory(path string) ([]string, error) {
	p, err := c.request(TypeDirectory, cjoin(path))
	if err != nil {
		return nil, fmt.Errorf("xenstore directory %s: %w", path, err)
	}
	return cstrings(p), nil
}

// DomainPath returns the home of domain domid, /local/domain/<domid>.
func (c *Client) DomainPath(domid uint32) (string, error) {
	p, err := c.request(TypeGetDomainPath, cjoin(strconv.FormatUint(uint64(domid), 10)))
	if err != nil {
		return "", fmt.Errorf("xenstore get-domain-path %d: %w", domid, err)
	}
	f := cstrings(p)
	if len(f) == 0 {
		return "", fmt.Errorf("xenstore get-domain-path %d: empty reply", domid)
	}
	return f[0], nil
}

// Watch reports paths at or below path that change, starting with one event
// for path itself as xenstored sends on registration, until ctx is done or
// the connection goes down; then the channel is closed. Relative watches
// report relative paths. Identical paths still queued are coalesced, so a
// slow reader sees "something changed here" rather than every write.
func (c *Client) Watch(ctx context.Context, path string) (<-chan string, error) {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, fmt.Errorf("xenstore watch %s: %w", path, err)
	}
	c.nextTok++
	token := fmt.Sprintf("xsproto-%d", c.nextTok)
	w := &watch{notify: make(chan struct{}, 1), out: make(chan string)}
	c.watches[token] = w
	c.mu.Unlock()

	if _, err := c.request(TypeWatch, cjoin(path, token)); err != nil {
		c.mu.Lock()
		delete(c.watches, token)
		c.mu.Unlock()
		return nil, fmt.Errorf("xenstore watch %s: %w", path, err)
	}
	go func() {
		w.pump(ctx)
		c.mu.Lock()
		_, live := c.watches[token]
		delete(c.watches, token)
		c.mu.Unlock()
		if live {
			c.request(TypeUnwatch, cjoin(path, token)) // best effort
		}
		close(w.out)
	}()
	return w.out, nil
}

// watch is one registered watch's unbounded, coalescing event queue.
type watch struct {
	mu     sync.Mutex
	items  []string
	closed bool
	notify chan struct{}
	out    chan string
}

func (w *watch) push(p string) {
	w.mu.Lock()
	dup := false
	for _, q := range w.items {
		if q == p {
			dup = true
			break
		}
	}
	if !dup {
		w.items = append(w.items, p)
	}
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

func (w *watch) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// pump delivers queued events to out until ctx is done or the watch is
// closed and drained.
func (w *watch) pump(ctx context.Context) {
	for {
		w.mu.Lock()
		if len(w.items) > 0 {
			p := w.items[0]
			w.items = w.items[1:]
			w.mu.Unlock()
			select {
			case w.out <- p:
				continue
			case <-ctx.Done():
				return
			}
		}
		closed := w.closed
		w.mu.Unlock()
		if closed {
			return
		}
		select {
		case <-w.notify:
		case <-ctx.Done():
			return
		}
	}
}
