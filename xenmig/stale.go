package xenmig

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/xenmig/xenmig/hypervisor"
)

// A receiver killed before the switchover (SIGKILL, a crash, the host's OOM
// killer) cannot destroy the shell it built: NAME--incoming stays behind,
// paused, holding its memory, and a new migration of NAME to this host is
// refused while it exists. So each receiver writes its own identity into
// its shell's xenstore directory, and a later receiver destroys a shell
// whose receiver is gone. Domains called NAME--incoming that carry no such
// mark (`xl migrate-receive` uses the same name) are never touched.

// shellOwnerKey is the xenstore key, under a shell's domain path, naming the
// process that owns it: ownerToken's "PID STARTTIME". Only dom0 can write
// there (the guest's home is read-only to the guest).
const shellOwnerKey = "xenmig/receiver"

// StaleShell is a destination shell whose receiver process is gone.
type StaleShell struct {
	Domain hypervisor.DomID
	Name   string
	Owner  string // the dead receiver's "PID STARTTIME"
}

// ReapStaleShells destroys every domain called NAME--incoming that a xenmig
// receiver built and whose receiver process no longer runs, and returns
// them. It never touches the shell of a running receiver, nor an
// NAME--incoming domain another toolstack built. `xenmig receive` calls it
// when it starts; a receiver also reaps the one shell in its way before it
// builds its own.
func ReapStaleShells(hv hypervisor.Hypervisor, log logrus.FieldLogger) ([]StaleShell, error) {
	doms, err := hv.Domains()
	if err != nil {
		return nil, fmt.Errorf("reap stale shells: %w", err)
	}
	var reaped []StaleShell
	var errs []error
	for _, d := range doms {
		if !strings.HasSuffix(d.Name, IncomingSuffix) {
			continue
		}
		s, err := reapStaleShell(hv, log, d.ID, d.Name)
		if err != nil {
			errs = append(errs, err)
		} else if s != nil {
			reaped = append(reaped, *s)
		}
	}
	return reaped, errors.Join(errs...)
}

// reapStaleShell destroys d, called name, if a receiver built it and is
// gone; it returns nil, nil if d is not such a shell.
func reapStaleShell(hv hypervisor.Hypervisor, log logrus.FieldLogger, d hypervisor.DomID, name string) (*StaleShell, error) {
	home, err := hv.DomainPath(d)
	if err != nil {
		if errors.Is(err, hypervisor.ErrNotFound) {
			return nil, nil // gone meanwhile
		}
		return nil, fmt.Errorf("reap stale shell %s (dom %d): %w", name, d, err)
	}
	owner, err := hv.StoreRead(home + "/" + shellOwnerKey)
	if errors.Is(err, hypervisor.ErrNotFound) {
		return nil, nil // not a xenmig receiver's shell
	} else if err != nil {
		return nil, fmt.Errorf("reap stale shell %s (dom %d): %w", name, d, err)
	}
	if ownerAlive(owner) {
		return nil, nil
	}
	// A shell never ran: one that runs was switched over and is a guest.
	if info, err := hv.Info(d); err != nil || info.State != hypervisor.StatePaused {
		return nil, nil
	}
	if err := hv.Destroy(d); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
		return nil, fmt.Errorf("destroy stale shell %s (dom %d) of receiver %q, which is gone: %w", name, d, owner, err)
	}
	log.WithFields(logrus.Fields{"domain": d, "name": name, "receiver": owner}).
		Warn("destroyed a domain shell left by a receiver that is gone (killed before the switchover); its migration had failed and its source kept the guest")
	return &StaleShell{Domain: d, Name: name, Owner: owner}, nil
}

// markShell records this process as the owner of the shell d.
func markShell(hv hypervisor.Hypervisor, d hypervisor.DomID) error {
	home, err := hv.DomainPath(d)
	if err != nil {
		return err
	}
	token, err := ownerToken(os.Getpid())
	if err != nil {
		return err
	}
	return hv.StoreWrite(home+"/"+shellOwnerKey, token)
}

// unmarkShell removes the owner mark of d, which is a shell no longer.
func unmarkShell(hv hypervisor.Hypervisor, d hypervisor.DomID) error {
	home, err := hv.DomainPath(d)
	if err != nil {
		return err
	}
	return hv.StoreRemove(home + "/" + shellOwnerKey)
}

// ownerToken names process pid for as long as it runs: "PID STARTTIME",
// its start time in clock ticks since boot (/proc/PID/stat, field 22), so
// that a pid reused by a later process does not pass for it.
func ownerToken(pid int) (string, error) {
	start, err := startTime(pid)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d %d", pid, start), nil
}

// ownerAlive reports whether the process an ownerToken names still runs. A
// token it cannot parse names no process.
func ownerAlive(token string) bool {
	var pid int
	var start uint64
	if n, err := fmt.Sscanf(token, "%d %d", &pid, &start); n != 2 || err != nil || pid <= 0 {
		return false
	}
	now, err := startTime(pid)
	return err == nil && now == start
}

// startTime reads field 22 of /proc/PID/stat.
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Field 2, the command, is in parentheses and may hold anything.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(string(b[i+1:])) // fields 3 and on
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	return strconv.ParseUint(f[19], 10, 64)
}
