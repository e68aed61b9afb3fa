package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/xenmig/xenmig/xenctrl"
)

func newDoctorCommand(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "doctor [DOMAIN]",
		Short: "Report what this host can do: Xen reachable, version, mem_paging, guest preconditions",
		Long: `Check this host for migration: whether the real Xen backend is built in,
whether a hypervisor answers and its version, whether it has mem_paging
(needed by post-copy and hybrid; Debian's stock Xen lacks it), whether dom0 is
PV, and, for DOMAIN, whether that guest can be paged (HVM/PVH with HAP, no
passthrough, no populate-on-demand). Pre-copy needs only a reachable Xen.

It exits 0 when post-copy can run here (for DOMAIN, if named), 6 otherwise.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			domain := ""
			if len(args) == 1 {
				domain = args[0]
			}
			r := xenctrl.Doctor(domain)
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(r); err != nil {
					return err
				}
			} else {
				fmt.Print(r.String())
			}
			if !r.PostCopy {
				return reportedWithCode(exitUnsupported, fmt.Errorf("post-copy migration cannot run on this host (see the problems above)"))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}
