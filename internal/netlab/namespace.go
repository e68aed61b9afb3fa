package netlab

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where named network namespaces are bind-mounted, as `ip
// netns` does (and netns.NewNamed).
const netnsDir = "/run/netns"

// addNamespaces creates the two namespaces under fresh names.
func (l *Lab) addNamespaces(prefix string) error {
	base := fmt.Sprintf("%s-%d-%06x", prefix, os.Getpid(), rand.Uint32()&0xffffff)
	l.ns = [2]string{base + "-a", base + "-b"}
	if err := newNamed(l.ns[A]); err != nil {
		return err
	}
	if err := newNamed(l.ns[B]); err != nil {
		return errors.Join(err, deleteNamed(l.ns[A]))
	}
	return nil
}

// newNamed creates the network namespace name and bind-mounts it under
// netnsDir. Creating it moves the calling thread into it, so that happens
// on a locked OS thread that is moved back before it is released.
func newNamed(name string) error {
	err := onLockedThread(func() error {
		h, err := netns.NewNamed(name)
		if err != nil {
			return err
		}
		return h.Close()
	})
	if err != nil {
		return permissionHint(fmt.Errorf("netlab: create network namespace %s: %w", name, err))
	}
	return nil
}

// deleteNamed unmounts and removes the named namespace; the kernel frees it
// when no process is left inside.
func deleteNamed(name string) error {
	if err := netns.DeleteNamed(name); err != nil {
		return fmt.Errorf("netlab: delete network namespace %s: %w", name, err)
	}
	return nil
}

// onLockedThread runs f on an OS thread of its own, which f may move to
// another network namespace: the thread is moved back to the process's
// namespace afterwards, and if that fails it is never reused (its
// goroutine exits locked, which ends the thread).
func onLockedThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netlab: current network namespace: %w", err)
			return
		}
		defer orig.Close()
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("netlab: return to the original network namespace: %w", err))
			return // the thread stays locked and ends with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// permissionHint marks err as ErrPermission when the kernel refused.
func permissionHint(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w: %w", ErrPermission, err)
	}
	return err
}

// removeNamespace kills the processes inside the named namespace, then
// deletes it. The processes are killed first: a namespace lives on while
// one runs inside, with its veth end.
func removeNamespace(name string) error {
	pids, err := pidsIn(filepath.Join(netnsDir, name))
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("netlab: killing process %d in namespace %s: %w", pid, name, err)
		}
	}
	return deleteNamed(name)
}

// pidsIn returns the processes whose network namespace is the one bound at
// path, as `ip netns pids` finds them: by the namespace file's device and
// inode.
func pidsIn(path string) ([]int, error) {
	var want unix.Stat_t
	if err := unix.Stat(path, &want); err != nil {
		return nil, fmt.Errorf("netlab: %s: %w", path, err)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("netlab: list processes: %w", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) != nil {
			continue // exited, or a kernel thread
		}
		if st.Dev == want.Dev && st.Ino == want.Ino {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// namedNamespaces returns the names of the network namespaces bound under
// netnsDir, as `ip netns list` shows them.
func namedNamespaces() ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netlab: list network namespaces: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}

// RemoveStale removes the namespaces named by labs with prefix (DefaultPrefix
// when empty) whose creating process no longer runs, as a crashed or killed
// benchmark leaves them. It returns the names it removed.
func RemoveStale(ctx context.Context, prefix string) ([]string, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	names, err := namedNamespaces()
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, name := range names {
		if ctx.Err() != nil {
			return removed, ctx.Err()
		}
		pid, ok := creator(name, prefix)
		if !ok || processAlive(pid) {
			continue
		}
		if err := removeNamespace(name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}

// creator returns the pid in a lab namespace name "<prefix>-<pid>-<rand>-<side>".
func creator(name, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix+"-")
	if !ok {
		return 0, false
	}
	parts := strings.Split(rest, "-")
	if len(parts) != 3 || (parts[2] != "a" && parts[2] != "b") {
		return 0, false
	}
	pid, err := strconv.Atoi(parts[0])
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
