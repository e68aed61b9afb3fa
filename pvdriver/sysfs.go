package pvdriver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// BalloonSysfsDir is where the Linux Xen balloon driver (drivers/xen/
// xen-balloon.c, CONFIG_XEN_BALLOON) shows itself, relative to the root.
const BalloonSysfsDir = "sys/devices/system/xen_memory/xen_memory0"

// MeminfoPath is /proc/meminfo relative to the root.
const MeminfoPath = "proc/meminfo"

// ErrNoBalloon is wrapped by the error of a guest without a balloon driver.
var ErrNoBalloon = errors.New("no Xen balloon driver")

// Balloon is the guest's balloon driver, in KiB.
type Balloon interface {
	// TargetKiB returns the target in force (target_kb).
	TargetKiB() (uint64, error)
	// SetTargetKiB asks the driver to balloon to kib; it then inflates or
	// deflates in the background.
	SetTargetKiB(kib uint64) error
	// CurrentKiB returns the memory the guest holds now (info/current_kb);
	// it trails the target while the driver works.
	CurrentKiB() (uint64, error)
}

// SysfsBalloon drives the Linux balloon driver through sysfs: target_kb to
// read and write the target, info/current_kb for what the guest holds.
type SysfsBalloon struct {
	// Dir is the xen_memory0 directory.
	Dir string
}

// OpenSysfsBalloon finds the balloon driver under root ("/" on a guest, a
// temporary directory in tests). Without it the error wraps ErrNoBalloon and
// says what to check.
func OpenSysfsBalloon(root string) (*SysfsBalloon, error) {
	dir := filepath.Join(root, BalloonSysfsDir)
	if _, err := os.Stat(filepath.Join(dir, "target_kb")); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w at %s: is this a Xen guest with CONFIG_XEN_BALLOON?", ErrNoBalloon, dir)
		}
		return nil, fmt.Errorf("balloon driver at %s: %w", dir, err)
	}
	return &SysfsBalloon{Dir: dir}, nil
}

// TargetKiB reads target_kb.
func (b *SysfsBalloon) TargetKiB() (uint64, error) {
	return readKiB(filepath.Join(b.Dir, "target_kb"))
}

// SetTargetKiB writes target_kb (root only).
func (b *SysfsBalloon) SetTargetKiB(kib uint64) error {
	p := filepath.Join(b.Dir, "target_kb")
	if err := os.WriteFile(p, []byte(strconv.FormatUint(kib, 10)+"\n"), 0o644); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("set balloon target %d KiB: %w (xenmig-balloond must run as root)", kib, err)
		}
		return fmt.Errorf("set balloon target %d KiB: %w", kib, err)
	}
	return nil
}

// CurrentKiB reads info/current_kb.
func (b *SysfsBalloon) CurrentKiB() (uint64, error) {
	return readKiB(filepath.Join(b.Dir, "info", "current_kb"))
}

func readKiB(path string) (uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read balloon %s: %w", filepath.Base(path), err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read balloon %s: %w", path, err)
	}
	return v, nil
}

// MemInfo is the part of /proc/meminfo the agent uses, in KiB.
type MemInfo struct {
	MemTotalKiB     uint64 // MemTotal: shrinks as the balloon inflates
	MemFreeKiB      uint64 // MemFree
	MemAvailableKiB uint64 // MemAvailable (0 on kernels before 3.14)
	CommittedKiB    uint64 // Committed_AS: memory promised to processes
}

// UsedKiB is the memory a guest holding currentKiB (the balloon driver's
// current_kb) could not give back without swapping: currentKiB less
// MemAvailable, which Inputs.UsedKiB takes. It is 0 (unknown) when the
// kernel reports no MemAvailable.
func (mi MemInfo) UsedKiB(currentKiB uint64) uint64 {
	if mi.MemAvailableKiB == 0 || currentKiB <= mi.MemAvailableKiB {
		return 0
	}
	return currentKiB - mi.MemAvailableKiB
}

// MemSource supplies MemInfo.
type MemSource interface {
	// MemInfo reads the guest's memory counters now.
	MemInfo() (MemInfo, error)
}

// ProcMeminfo reads a /proc/meminfo file.
type ProcMeminfo struct {
	// Path is the file, normally /proc/meminfo.
	Path string
}

// NewProcMeminfo returns the meminfo source under root.
func NewProcMeminfo(root string) *ProcMeminfo {
	return &ProcMeminfo{Path: filepath.Join(root, MeminfoPath)}
}

// MemInfo reads and parses the file.
func (m *ProcMeminfo) MemInfo() (MemInfo, error) {
	f, err := os.Open(m.Path)
	if err != nil {
		return MemInfo{}, fmt.Errorf("meminfo: %w", err)
	}
	defer f.Close()
	mi, err := ParseMeminfo(f)
	if err != nil {
		return MemInfo{}, fmt.Errorf("meminfo %s: %w", m.Path, err)
	}
	return mi, nil
}

// ParseMeminfo parses the /proc/meminfo format ("Committed_AS:  123456 kB").
// MemTotal and Committed_AS are required; unknown lines are ignored.
func ParseMeminfo(r io.Reader) (MemInfo, error) {
	var mi MemInfo
	fields := map[string]*uint64{
		"MemTotal":     &mi.MemTotalKiB,
		"MemFree":      &mi.MemFreeKiB,
		"MemAvailable": &mi.MemAvailableKiB,
		"Committed_AS": &mi.CommittedKiB,
	}
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		dst, want := fields[name]
		if !want {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 || len(f) > 2 || (len(f) == 2 && f[1] != "kB") {
			return MemInfo{}, fmt.Errorf("%s: malformed %q", name, rest)
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return MemInfo{}, fmt.Errorf("%s: %w", name, err)
		}
		*dst = v
		seen[name] = true
	}
	if err := sc.Err(); err != nil {
		return MemInfo{}, err
	}
	for _, k := range []string{"MemTotal", "Committed_AS"} {
		if !seen[k] {
			return MemInfo{}, fmt.Errorf("no %s line", k)
		}
	}
	return mi, nil
}
