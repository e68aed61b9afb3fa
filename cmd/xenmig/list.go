package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/xenmig/xenmig/conf"
)

func newListCommand(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the domains on this host",
		Long: `List this host's domains (dom0 excluded) with what a migration needs to know:
state, vCPUs, memory, pages paged out, HVM and HAP.

A simulated host lives inside the xenmig process that runs it (migrate,
receive, demo), so with the simulated backend the list is empty.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			hv, closeHV, err := a.openBackend()
			if err != nil {
				return err
			}
			defer closeHV()
			doms, err := hv.Domains()
			if err != nil {
				return withCode(exitFailure, fmt.Errorf("list domains: %w", err))
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(doms)
			}
			if a.cfg.Backend == conf.BackendSim {
				a.log.Info("simulated backend: simulated domains live inside the xenmig process that runs them")
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tSTATE\tVCPUS\tMEMORY\tPAGED\tHVM\tHAP")
			for _, d := range doms {
				fmt.Fprintf(tw, "%d\t%s\t%v\t%d\t%d MiB\t%d\t%v\t%v\n", d.ID, d.Name, d.State, d.VCPUs,
					d.TotPages*4/1024, d.PagedPages, d.HVM, d.HAP)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the list as JSON")
	return cmd
}
