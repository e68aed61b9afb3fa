package sim

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/xenmig/xenmig/hypervisor"
)

// store is the host's xenstore: one tree of absolute paths. Writers never
// block on watchers: each watch has its own unbounded queue, as xenstored
// queues watch events per connection, so no change is lost.
type store struct {
	mu      sync.Mutex
	root    *node
	watches map[*watch]struct{}
}

// node is a xenstore node: a value and children.
type node struct {
	value string
	kids  map[string]*node
}

// watch is one registered watch and its event queue.
type watch struct {
	path   string
	mu     sync.Mutex
	queue  []string
	signal chan struct{} // capacity 1: queue is non-empty
}

func newStore() *store {
	return &store{root: &node{}, watches: make(map[*watch]struct{})}
}

// split validates an absolute path and returns its components.
func split(path string) ([]string, error) {
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("xenstore path %q: not absolute: %w", path, hypervisor.ErrInvalid)
	}
	p := strings.TrimSuffix(path[1:], "/")
	if p == "" {
		return nil, nil
	}
	parts := strings.Split(p, "/")
	for _, c := range parts {
		if c == "" {
			return nil, fmt.Errorf("xenstore path %q: empty component: %w", path, hypervisor.ErrInvalid)
		}
	}
	return parts, nil
}

// clean returns path in canonical form.
func clean(parts []string) string { return "/" + strings.Join(parts, "/") }

// read returns the value at path.
func (s *store) read(path string) (string, error) {
	parts, err := split(path)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.root
	for _, c := range parts {
		if n = n.kids[c]; n == nil {
			return "", fmt.Errorf("xenstore read %s: %w", path, hypervisor.ErrNotFound)
		}
	}
	return n.value, nil
}

// write sets the value at path, creating it and its parents.
func (s *store) write(path, value string) error {
	parts, err := split(path)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.root
	for _, c := range parts {
		k := n.kids[c]
		if k == nil {
			if n.kids == nil {
				n.kids = make(map[string]*node)
			}
			k = &node{}
			n.kids[c] = k
		}
		n = k
	}
	n.value = value
	s.fireLocked(clean(parts), false)
	return nil
}

// remove deletes path and its subtree; removing a missing path is ErrNotFound.
func (s *store) remove(path string) error {
	parts, err := split(path)
	if err != nil {
		return err
	}
	if len(parts) == 0 {
		return fmt.Errorf("xenstore remove /: %w", hypervisor.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.root
	for _, c := range parts[:len(parts)-1] {
		if n = n.kids[c]; n == nil {
			return fmt.Errorf("xenstore remove %s: %w", path, hypervisor.ErrNotFound)
		}
	}
	last := parts[len(parts)-1]
	if n.kids[last] == nil {
		return fmt.Errorf("xenstore remove %s: %w", path, hypervisor.ErrNotFound)
	}
	delete(n.kids, last)
	s.fireLocked(clean(parts), true)
	return nil
}

// below reports whether path is p or lies under it.
func below(path, p string) bool {
	return p == "/" || path == p || strings.HasPrefix(path, p+"/")
}

// fireLocked queues the event for every watch at or above path and, for a
// removal, for every watch below it (with the watch's own path), as
// xenstored fires them; s.mu must be held.
func (s *store) fireLocked(path string, removal bool) {
	for w := range s.watches {
		switch {
		case below(path, w.path):
			w.post(path)
		case removal && below(w.path, path):
			w.post(w.path)
		}
	}
}

// post queues an event on w without blocking.
func (w *watch) post(path string) {
	w.mu.Lock()
	w.queue = append(w.queue, path)
	w.mu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

// watch registers a watch on path, with its first event queued, and returns
// the channel it is delivered on until ctx is done.
func (s *store) watch(ctx context.Context, path string) (<-chan string, error) {
	parts, err := split(path)
	if err != nil {
		return nil, err
	}
	w := &watch{path: clean(parts), signal: make(chan struct{}, 1)}
	s.mu.Lock()
	s.watches[w] = struct{}{}
	s.mu.Unlock()
	w.post(w.path)
	out := make(chan string)
	go func() {
		defer close(out)
		defer func() {
			s.mu.Lock()
			delete(s.watches, w)
			s.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.signal:
			}
			w.mu.Lock()
			q := w.queue
			w.queue = nil
			w.mu.Unlock()
			for _, p := range q {
				select {
				case out <- p:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// StoreRead reads a xenstore key; ErrNotFound if it does not exist.
func (h *Host) StoreRead(path string) (string, error) { return h.store.read(path) }

// StoreWrite writes a xenstore key, creating it and its parents.
func (h *Host) StoreWrite(path, value string) error { return h.store.write(path, value) }

// StoreRemove deletes a xenstore key and its subtree.
func (h *Host) StoreRemove(path string) error { return h.store.remove(path) }

// StoreWatch reports the paths at or below path that change, starting with
// one event for path itself, until ctx is done; then the channel is closed.
// Events queue without bound, so a slow reader loses none and blocks no
// writer.
func (h *Host) StoreWatch(ctx context.Context, path string) (<-chan string, error) {
	return h.store.watch(ctx, path)
}
