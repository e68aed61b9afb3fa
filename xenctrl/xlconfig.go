package xenctrl

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/xenmig/xenmig/hypervisor"
)

// configBackend is DomainConfig.Backend for configurations of this backend.
const configBackend = "xen"

// findConfig returns the first of patterns (fmt, one %s for the name) that
// names a readable file, and its contents.
func findConfig(patterns []string, name string) (string, []byte, error) {
	var tried []string
	for _, p := range patterns {
		path := p
		if strings.Contains(p, "%s") {
			path = fmt.Sprintf(p, name)
		}
		data, err := os.ReadFile(path)
		if err == nil {
			return path, data, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", nil, err
		}
		tried = append(tried, path)
	}
	return "", nil, fmt.Errorf("no xl configuration file for domain %q (tried %s): libxl keeps no "+
		"record of it, so xenmig needs the file it was created from to build the destination; "+
		"put the config there or pass its location (WithConfigPaths): %w",
		name, strings.Join(tried, ", "), hypervisor.ErrNotFound)
}

// domainConfig builds the DomainConfig of a running domain from its info and
// its configuration: libxl's JSON record, or an xl configuration file.
func domainConfig(info hypervisor.DomainInfo, raw []byte) hypervisor.DomainConfig {
	return hypervisor.DomainConfig{
		Name:     info.Name,
		VCPUs:    info.VCPUs,
		MaxPages: info.MaxPages,
		HVM:      info.HVM,
		Backend:  configBackend,
		Raw:      raw,
		UUID:     info.UUID,
	}
}

// isJSONConfig reports whether raw is libxl's JSON form of a configuration
// (libxl_domain_config_to_json) rather than an xl configuration file, which
// never starts with a brace.
func isJSONConfig(raw []byte) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && t[0] == '{'
}

// xlCreateArgs are the arguments of the `xl create` that makes a destination
// shell: paused (-p), from the migrated config file, under the migrated
// name (a later line of the config overrides an earlier one).
func xlCreateArgs(file, name string) []string {
	return []string{"create", "-p", file, "name=" + strconv.Quote(name)}
}

// checkShellConfig refuses a config this backend cannot create a shell from.
func checkShellConfig(cfg hypervisor.DomainConfig) error {
	if cfg.Backend != configBackend {
		return fmt.Errorf("domain config is for backend %q, not %q: %w", cfg.Backend, configBackend, hypervisor.ErrInvalid)
	}
	if len(cfg.Raw) == 0 {
		return fmt.Errorf("domain config of %q carries no xl configuration: %w", cfg.Name, hypervisor.ErrInvalid)
	}
	if cfg.Name == "" {
		return fmt.Errorf("domain config has no name: %w", hypervisor.ErrInvalid)
	}
	return nil
}

// hvmSaveParams are the HVM parameters SaveCPU carries, those Xen 4.17's
// saver sends (tools/libs/guest/xg_sr_save_x86_hvm.c, write_hvm_params).
// Parameters that read as zero are left out, as the saver does.
var hvmSaveParams = []uint32{
	1,  // HVM_PARAM_STORE_PFN
	5,  // HVM_PARAM_IOREQ_PFN
	6,  // HVM_PARAM_BUFIOREQ_PFN
	27, // HVM_PARAM_PAGING_RING_PFN
	28, // HVM_PARAM_MONITOR_RING_PFN
	29, // HVM_PARAM_SHARING_RING_PFN
	37, // HVM_PARAM_VM86_TSS_SIZED
	17, // HVM_PARAM_CONSOLE_PFN
	19, // HVM_PARAM_ACPI_IOPORTS_LOCATION
	9,  // HVM_PARAM_VIRIDIAN
	12, // HVM_PARAM_IDENT_PT
	34, // HVM_PARAM_VM_GENERATION_ID_ADDR
	32, // HVM_PARAM_IOREQ_SERVER_PFN
	33, // HVM_PARAM_NR_IOREQ_SERVER_PAGES
	36, // HVM_PARAM_X87_FIP_WIDTH
	38, // HVM_PARAM_MCA_CAP
}
