package xsproto

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Server is a tiny in-memory xenstored: a tree of keys served over the wire
// protocol on any number of listeners, with the semantics a guest agent
// relies on — relative paths resolved against one domain's home, parents
// created on write, recursive rm, watches that fire once on registration and
// then on every write or rm at or below them, ENOENT for missing keys.
// Permissions, transactions and quotas are not modelled: those requests get
// ENOSYS.
//
// Every connection is taken to be domain DomID (as a guest's xenbus
// connection is); dom0-side code in the same process uses the Read, Write
// and Rm methods, which fire watches the same way.
type Server struct {
	// DomID is the domain every connection speaks for.
	DomID uint32

	mu      sync.Mutex
	nodes   map[string]string // absolute path -> value
	watches []*swatch
	conns   map[*sconn]struct{}
	lns     []net.Listener
	closed  bool
	wg      sync.WaitGroup
}

type swatch struct {
	c        *sconn
	path     string // absolute
	token    string
	relative bool
}

// NewServer returns an empty store whose connections speak for domain domid;
// the domain's home /local/domain/<domid> exists.
func NewServer(domid uint32) *Server {
	s := &Server{DomID: domid, nodes: map[string]string{"/": ""}, conns: map[*sconn]struct{}{}}
	s.mkparents(s.DomainPath() + "/x")
	return s
}

// DomainPath returns /local/domain/<DomID>.
func (s *Server) DomainPath() string {
	return "/local/domain/" + strconv.FormatUint(uint64(s.DomID), 10)
}

// ListenUnix serves the store on a new unix socket at path until Close.
func (s *Server) ListenUnix(path string) error {
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("xenstore server: %w", err)
	}
	go s.Serve(l)
	return nil
}

// Serve accepts connections on l until l or the server is closed.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrClosed
	}
	s.lns = append(s.lns, l)
	s.mu.Unlock()
	for {
		nc, err := l.Accept()
		if err != nil {
			return fmt.Errorf("xenstore server accept: %w", err)
		}
		c := &sconn{s: s, nc: nc, out: make(chan Msg, 256), done: make(chan struct{})}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return ErrClosed
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(2)
		go c.writeLoop()
		go c.readLoop()
	}
}

// Close stops every listener and connection.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	lns := s.lns
	var cs []*sconn
	for c := range s.conns {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, l := range lns {
		l.Close()
	}
	for _, c := range cs {
		c.close()
	}
	s.wg.Wait()
	return nil
}

// Read returns the value at path (absolute, or relative to DomainPath).
func (s *Server) Read(path string) (string, error) {
	p, err := s.abs(path)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.nodes[p]
	if !ok {
		return "", &Error{Name: "ENOENT"}
	}
	return v, nil
}

// Write sets path to value, creating parents, and fires watches.
func (s *Server) Write(path, value string) error {
	p, err := s.abs(path)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mkparents(p)
	s.nodes[p] = value
	s.fire(p, false)
	return nil
}

// Rm removes path and its children and fires watches. A missing key whose
// parent exists is not an error.
func (s *Server) Rm(path string) error {
	p, err := s.abs(path)
	if err != nil {
		return err
	}
	if p == "/" {
		return &Error{Name: "EINVAL"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.nodes[p]; !ok {
		if _, ok := s.nodes[parent(p)]; ok {
			return nil
		}
		return &Error{Name: "ENOENT"}
	}
	for k := range s.nodes {
		if under(k, p) {
			delete(s.nodes, k)
		}
	}
	s.fire(p, true)
	return nil
}

// Directory lists the children of path, sorted.
func (s *Server) Directory(path string) ([]string, error) {
	p, err := s.abs(path)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.nodes[p]; !ok {
		return nil, &Error{Name: "ENOENT"}
	}
	prefix := p + "/"
	if p == "/" {
		prefix = "/"
	}
	var out []string
	for k := range s.nodes {
		if k != p && strings.HasPrefix(k, prefix) && !strings.Contains(k[len(prefix):], "/") {
			out = append(out, k[len(prefix):])
		}
	}
	sort.Strings(out)
	return out, nil
}

// abs validates path and makes it absolute.
func (s *Server) abs(path string) (string, error) {
	if path == "" || strings.Contains(path, "//") || (len(path) > 1 && strings.HasSuffix(path, "/")) || strings.ContainsRune(path, 0) {
		return "", &Error{Name: "EINVAL"}
	}
	if path[0] == '/' {
		return path, nil
	}
	return s.DomainPath() + "/" + path, nil
}

// mkparents creates the missing ancestors of absolute path p; s.mu held.
func (s *Server) mkparents(p string) {
	for q := parent(p); ; q = parent(q) {
		if _, ok := s.nodes[q]; ok {
			return
		}
		s.nodes[q] = ""
	}
}

// fire queues events for a change at absolute path p; with rm, watches below
// p fire too (their node went away). s.mu held.
func (s *Server) fire(p string, rm bool) {
	for _, w := range s.watches {
		ev := ""
		switch {
		case under(p, w.path):
			ev = p
		case rm && under(w.path, p):
			ev = w.path
		default:
			continue
		}
		if w.relative {
			ev = strings.TrimPrefix(ev, s.DomainPath()+"/")
		}
		w.c.send(Msg{Type: TypeWatchEvent, Payload: cjoin(ev, w.token)})
	}
}

// parent returns the parent of absolute path p ("/" for "/x").
func parent(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

// under reports whether absolute path p is dir or below it.
func under(p, dir string) bool {
	if dir == "/" {
		return true
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// sconn is one client connection of a Server.
type sconn struct {
	s    *Server
	nc   net.Conn
	out  chan Msg
	once sync.Once
	done chan struct{}
}

// send queues m; a client that lets 256 messages pile up is dropped, as
// xenstored drops connections that exceed their quota.
func (c *sconn) send(m Msg) {
	select {
	case <-c.done:
	case c.out <- m:
	default:
		go c.close()
	}
}

func (c *sconn) close() {
	c.once.Do(func() {
		close(c.done)
		c.nc.Close()
		c.s.mu.Lock()
		delete(c.s.conns, c)
		ws := c.s.watches[:0]
		for _, w := range c.s.watches {
			if w.c != c {
				ws = append(ws, w)
			}
		}
		c.s.watches = ws
		c.s.mu.Unlock()
	})
}

func (c *sconn) writeLoop() {
	defer c.s.wg.Done()
	for {
		select {
		case <-c.done:
			return
		case m := <-c.out:
			if err := WriteMsg(c.nc, m); err != nil {
				c.close()
				return
			}
		}
	}
}

func (c *sconn) readLoop() {
	defer c.s.wg.Done()
	defer c.close()
	for {
		m, err := ReadMsg(c.nc)
		if err != nil {
			return
		}
		reply, err := c.handle(m)
		if err == errSent {
			continue
		}
		if err != nil {
			var xe *Error
			if !errors.As(err, &xe) {
				xe = &Error{Name: "EINVAL"}
			}
			c.send(Msg{Type: TypeError, ReqID: m.ReqID, TxID: m.TxID, Payload: cjoin(xe.Name)})
			continue
		}
		c.send(Msg{Type: m.Type, ReqID: m.ReqID, TxID: m.TxID, Payload: reply})
	}
}

var ok = cjoin("OK")

// errSent tells readLoop that handle already queued its reply.
var errSent = errors.New("reply sent")

// handle serves one request and returns the reply payload.
func (c *sconn) handle(m Msg) ([]byte, error) {
	s := c.s
	f := cstrings(m.Payload)
	arg := func(i int) (string, error) {
		if i >= len(f) {
			return "", &Error{Name: "EINVAL"}
		}
		return f[i], nil
	}
	switch m.Type {
	case TypeRead:
		p, err := arg(0)
		if err != nil {
			return nil, err
		}
		v, err := s.Read(p)
		return []byte(v), err
	case TypeWrite:
		i := 0
		for i < len(m.Payload) && m.Payload[i] != 0 {
			i++
		}
		if i == len(m.Payload) {
			return nil, &Error{Name: "EINVAL"}
		}
		return ok, s.Write(string(m.Payload[:i]), string(m.Payload[i+1:]))
	case TypeMkdir:
		p, err := arg(0)
		if err != nil {
			return nil, err
		}
		if _, err := s.Read(p); err == nil {
			return ok, nil
		}
		return ok, s.Write(p, "")
	case TypeRm:
		p, err := arg(0)
		if err != nil {
			return nil, err
		}
		return ok, s.Rm(p)
	case TypeDirectory:
		p, err := arg(0)
		if err != nil {
			return nil, err
		}
		names, err := s.Directory(p)
		if err != nil {
			return nil, err
		}
		return cjoin(names...), nil
	case TypeGetDomainPath:
		d, err := arg(0)
		if err != nil {
			return nil, err
		}
		if _, err := strconv.ParseUint(d, 10, 16); err != nil {
			return nil, &Error{Name: "EINVAL"}
		}
		return cjoin("/local/domain/" + d), nil
	case TypeWatch:
		p, err := arg(0)
		if err != nil {
			return nil, err
		}
		tok, err := arg(1)
		if err != nil {
			return nil, err
		}
		w := &swatch{c: c, token: tok}
		if strings.HasPrefix(p, "@") { // @introduceDomain, @releaseDomain: never fire here
			w.path = p
		} else {
			if w.path, err = s.abs(p); err != nil {
				return nil, err
			}
			w.relative = p[0] != '/'
		}
		s.mu.Lock()
		for _, o := range s.watches {
			if o.c == c && o.token == tok && o.path == w.path {
				s.mu.Unlock()
				return nil, &Error{Name: "EEXIST"}
			}
		}
		s.watches = append(s.watches, w)
		// The reply goes first, then the initial event, as xenstored does.
		c.send(Msg{Type: TypeWatch, ReqID: m.ReqID, TxID: m.TxID, Payload: ok})
		c.send(Msg{Type: TypeWatchEvent, Payload: cjoin(p, tok)})
		s.mu.Unlock()
		return nil, errSent
	case TypeUnwatch:
		p, err := arg(0)
		if err != nil {
			return nil, err
		}
		tok, err := arg(1)
		if err != nil {
			return nil, err
		}
		if !strings.HasPrefix(p, "@") {
			if p, err = s.abs(p); err != nil {
				return nil, err
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, o := range s.watches {
			if o.c == c && o.token == tok && o.path == p {
				s.watches = append(s.watches[:i], s.watches[i+1:]...)
				return ok, nil
			}
		}
		return nil, &Error{Name: "ENOENT"}
	default:
		return nil, &Error{Name: "ENOSYS"}
	}
}
