package main

import (
	"fmt"
	"os"

	"github.com/xenmig/xenmig/hypervisor"
)

// configFile is a hypervisor whose domains are described by one xl
// configuration file instead of their own (xl migrate -C): the destination
// is built from it.
type configFile struct {
	hypervisor.Hypervisor
	raw []byte
}

// withConfigFile returns hv with Config's xl configuration replaced by the
// contents of path. Only the xen backend carries an xl configuration.
func withConfigFile(hv hypervisor.Hypervisor, path string) (hypervisor.Hypervisor, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-C: %w", err)
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("-C %s: the file is empty", path)
	}
	return configFile{Hypervisor: hv, raw: raw}, nil
}

// Config returns the domain's configuration with the file as its xl
// configuration; name, UUID, CPU policy and special pages stay the domain's.
func (c configFile) Config(d hypervisor.DomID) (hypervisor.DomainConfig, error) {
	cfg, err := c.Hypervisor.Config(d)
	if err != nil {
		return cfg, err
	}
	cfg.Raw = c.raw
	return cfg, nil
}
