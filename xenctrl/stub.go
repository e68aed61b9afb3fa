//go:build !(xen && linux)

package xenctrl

import (
	"context"
	"time"

	"github.com/xenmig/xenmig/hypervisor"
)

var _ hypervisor.Hypervisor = (*Host)(nil)

// Host would be a connection to a real Xen host; this binary was built without
// the real backend, so Open never returns one and every method fails with
// ErrNotBuilt.
type Host struct{}

// Open fails with ErrNotBuilt: this binary was built without the build tag
// `xen`. Rebuild with `make build-xen` (go build -tags xen) on a host with
// libxen-dev.
func Open(opts ...Option) (*Host, error) { return nil, ErrNotBuilt }

// Doctor reports that the real backend is not built in.
func Doctor(domain string, opts ...Option) *Report {
	r := &Report{Problems: []string{ErrNotBuilt.Error()}}
	if domain != "" {
		r.Guest = &GuestReport{Name: domain}
	}
	r.finish()
	return r
}

// Close does nothing.
func (h *Host) Close() error { return nil }

// Domains fails with ErrNotBuilt.
func (h *Host) Domains() ([]hypervisor.DomainInfo, error) { return nil, ErrNotBuilt }

// Lookup fails with ErrNotBuilt.
func (h *Host) Lookup(string) (hypervisor.DomID, error) { return 0, ErrNotBuilt }

// Info fails with ErrNotBuilt.
func (h *Host) Info(hypervisor.DomID) (hypervisor.DomainInfo, error) {
	return hypervisor.DomainInfo{}, ErrNotBuilt
}

// Config fails with ErrNotBuilt.
func (h *Host) Config(hypervisor.DomID) (hypervisor.DomainConfig, error) {
	return hypervisor.DomainConfig{}, ErrNotBuilt
}

// CreateShell fails with ErrNotBuilt.
func (h *Host) CreateShell(hypervisor.DomainConfig) (hypervisor.DomID, error) { return 0, ErrNotBuilt }

// Rename fails with ErrNotBuilt.
func (h *Host) Rename(hypervisor.DomID, string) error { return ErrNotBuilt }

// Pause fails with ErrNotBuilt.
func (h *Host) Pause(hypervisor.DomID) error { return ErrNotBuilt }

// Unpause fails with ErrNotBuilt.
func (h *Host) Unpause(hypervisor.DomID) error { return ErrNotBuilt }

// Suspend fails with ErrNotBuilt.
func (h *Host) Suspend(context.Context, hypervisor.DomID, time.Duration) error { return ErrNotBuilt }

// CancelSuspend fails with ErrNotBuilt.
func (h *Host) CancelSuspend(hypervisor.DomID) error { return ErrNotBuilt }

// Destroy fails with ErrNotBuilt.
func (h *Host) Destroy(hypervisor.DomID) error { return ErrNotBuilt }

// MaxGFN fails with ErrNotBuilt.
func (h *Host) MaxGFN(hypervisor.DomID) (hypervisor.GFN, error) { return 0, ErrNotBuilt }

// Populated fails with ErrNotBuilt.
func (h *Host) Populated(hypervisor.DomID) (*hypervisor.Bitmap, error) { return nil, ErrNotBuilt }

// ReadPages fails with ErrNotBuilt.
func (h *Host) ReadPages(hypervisor.DomID, []hypervisor.GFN, []byte) error { return ErrNotBuilt }

// WritePages fails with ErrNotBuilt.
func (h *Host) WritePages(hypervisor.DomID, []hypervisor.GFN, []byte) error { return ErrNotBuilt }

// Populate fails with ErrNotBuilt.
func (h *Host) Populate(hypervisor.DomID, []hypervisor.GFN) error { return ErrNotBuilt }

// Depopulate fails with ErrNotBuilt.
func (h *Host) Depopulate(hypervisor.DomID, []hypervisor.GFN) error { return ErrNotBuilt }

// EnableLogDirty fails with ErrNotBuilt.
func (h *Host) EnableLogDirty(hypervisor.DomID) error { return ErrNotBuilt }

// DirtyLog fails with ErrNotBuilt.
func (h *Host) DirtyLog(hypervisor.DomID, bool) (*hypervisor.Bitmap, error) { return nil, ErrNotBuilt }

// DisableLogDirty fails with ErrNotBuilt.
func (h *Host) DisableLogDirty(hypervisor.DomID) error { return ErrNotBuilt }

// SaveCPU fails with ErrNotBuilt.
func (h *Host) SaveCPU(hypervisor.DomID) (hypervisor.CPUState, error) {
	return hypervisor.CPUState{}, ErrNotBuilt
}

// RestoreCPU fails with ErrNotBuilt.
func (h *Host) RestoreCPU(hypervisor.DomID, hypervisor.CPUState) error { return ErrNotBuilt }

// EnablePaging fails with ErrNotBuilt.
func (h *Host) EnablePaging(hypervisor.DomID) (hypervisor.Pager, error) { return nil, ErrNotBuilt }

// DomainPath fails with ErrNotBuilt.
func (h *Host) DomainPath(hypervisor.DomID) (string, error) { return "", ErrNotBuilt }

// StoreRead fails with ErrNotBuilt.
func (h *Host) StoreRead(string) (string, error) { return "", ErrNotBuilt }

// StoreWrite fails with ErrNotBuilt.
func (h *Host) StoreWrite(string, string) error { return ErrNotBuilt }

// StoreRemove fails with ErrNotBuilt.
func (h *Host) StoreRemove(string) error { return ErrNotBuilt }

// StoreWatch fails with ErrNotBuilt.
func (h *Host) StoreWatch(context.Context, string) (<-chan string, error) { return nil, ErrNotBuilt }
