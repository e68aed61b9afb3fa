package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
)

// startProfiles starts the CPU profile --cpuprofile asks for; stopProfiles
// ends it and writes the heap profile --memprofile asks for (allocations
// included: `go tool pprof -sample_index=alloc_space`).
func (a *app) startProfiles() error {
	if a.cpuProfile == "" {
		return nil
	}
	f, err := os.Create(a.cpuProfile)
	if err != nil {
		return withCode(exitUsage, fmt.Errorf("--cpuprofile: %w", err))
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return withCode(exitFailure, fmt.Errorf("--cpuprofile: %w", err))
	}
	a.cpuProfileFile = f
	return nil
}

// stopProfiles writes the profiles started or asked for; a failure is
// reported on standard error and does not change the command's outcome.
func (a *app) stopProfiles() {
	if a.cpuProfileFile != nil {
		pprof.StopCPUProfile()
		if err := a.cpuProfileFile.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "xenmig: --cpuprofile:", err)
		}
		a.cpuProfileFile = nil
	}
	if a.memProfile == "" {
		return
	}
	f, err := os.Create(a.memProfile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "xenmig: --memprofile:", err)
		return
	}
	runtime.GC() // the heap as of the last collection: make it now
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		fmt.Fprintln(os.Stderr, "xenmig: --memprofile:", err)
	}
	if err := f.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "xenmig: --memprofile:", err)
	}
}
