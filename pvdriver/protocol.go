package pvdriver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/xenmig/xenmig/internal/xsproto"
)

// The guest <-> dom0 protocol, all in the domain's xenstore home
// /local/domain/<domid>; the paths here are relative to it, as a guest
// writes them. docs/BALLOON.md is the full description.
const (
	// ProtocolVersion is written to KeyVersion by the agent.
	ProtocolVersion = "1"

	// ControlKey is written by dom0: "<command>[ <token>]", command one of
	// CmdSqueeze, CmdDone, CmdCancel; the token (no spaces) lets dom0 tell
	// its ack from a stale one. The agent watches it.
	ControlKey = "control/xenmig/migrate"

	// DataDir holds what the agent reports; the keys below are in it.
	DataDir = "data/xenmig/balloon"
	// KeyVersion is ProtocolVersion, written at start: the agent is here.
	KeyVersion = DataDir + "/version"
	// KeyState is one of the State* values.
	KeyState = DataDir + "/state"
	// KeyTarget is the balloon target the agent set, KiB.
	KeyTarget = DataDir + "/target_kb"
	// KeyCurrent is the memory the guest held at the last report, KiB.
	KeyCurrent = DataDir + "/current_kb"
	// KeyCommitted is Committed_AS at the last report, KiB.
	KeyCommitted = DataDir + "/committed_kb"
	// KeyMax is the ceiling in force, KiB.
	KeyMax = DataDir + "/max_kb"
	// KeySqueezed is the memory the guest held when it acknowledged a
	// squeeze, KiB.
	KeySqueezed = DataDir + "/squeezed_kb"
	// KeyResult is how the last squeeze ended: ResultReached or
	// ResultTimeout.
	KeyResult = DataDir + "/result"
	// KeyAck is the ControlKey value the agent last finished acting on,
	// written after every other key of that action.
	KeyAck = DataDir + "/ack"
	// KeyError is the last problem the agent wants dom0 to know about
	// ("" when none).
	KeyError = DataDir + "/error"

	// MemoryTargetKey is the toolstack's memory target for the domain, KiB
	// (xl mem-set); the agent never sets a balloon target above it.
	MemoryTargetKey = "memory/target"
)

// Control commands, the first word of ControlKey.
const (
	CmdSqueeze = "squeeze" // balloon to the smallest safe size and ack
	CmdDone    = "done"    // migration over: back to the normal policy
	CmdCancel  = "cancel"  // migration abandoned: back to the normal policy
)

// Agent states, the values of KeyState.
const (
	StateRunning   = "running"   // normal self-ballooning
	StateSqueezing = "squeezing" // squeeze asked, balloon inflating
	StateSqueezed  = "squeezed"  // squeeze acknowledged
	StateStopped   = "stopped"   // agent exited cleanly
)

// Squeeze results, the values of KeyResult.
const (
	ResultReached = "reached" // current_kb reached the squeeze target
	ResultTimeout = "timeout" // the bounded wait ran out first; squeezed_kb says how far it got
	ResultStalled = "stalled" // the balloon stopped shrinking (the guest allocates as fast as it frees); squeezed_kb says how far it got
)

// ParseControl splits a ControlKey value into command and token.
func ParseControl(v string) (cmd, token string) {
	cmd, token, _ = strings.Cut(strings.TrimSpace(v), " ")
	return cmd, strings.TrimSpace(token)
}

// Store is the xenstore access the agent needs. Relative paths are relative
// to the domain's home. Read of a missing key fails with an error matching
// fs.ErrNotExist. *xsproto.Client implements it.
type Store interface {
	// Read returns the value at path.
	Read(path string) (string, error)
	// Write sets path to value, creating it and its parents.
	Write(path, value string) error
	// Watch reports changes at or below path, starting with one event for
	// path itself, until ctx is done; then the channel is closed. A channel
	// closed before that means the connection is gone.
	Watch(ctx context.Context, path string) (<-chan string, error)
}

// ErrNoXenstore is wrapped by the error of a guest without xenstore access.
var ErrNoXenstore = errors.New("no xenstore access")

// OpenXenstore connects to xenstore: at path if set (a device or a unix
// socket), else at the first of xsproto.GuestPaths that exists. Without one
// the error wraps ErrNoXenstore and says what to check.
func OpenXenstore(path string) (*xsproto.Client, error) {
	paths := xsproto.GuestPaths
	if path != "" {
		paths = []string{path}
	}
	c, _, err := xsproto.DialFirst(paths...)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w at %s: is this a Xen guest (CONFIG_XEN) with devtmpfs on /dev, or xenfs on /proc/xen (CONFIG_XENFS)?", ErrNoXenstore, strings.Join(paths, " or "))
		}
		return nil, fmt.Errorf("%w: %v", ErrNoXenstore, err)
	}
	return c, nil
}
