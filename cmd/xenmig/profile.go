package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
)

// startProfiles starts the CPU profile --cpuprofile and the execution trace
// --trace ask for; stopProfiles ends them and writes the heap profile
// --memprofile asks for (allocations included: `go tool pprof
// -sample_index=alloc_space`).
func (a *app) startProfiles() (err error) {
	if a.traceOut, err = startRecording("--trace", a.traceFile, trace.Start); err != nil {
		return err
	}
	a.cpuProfileFile, err = startRecording("--cpuprofile", a.cpuProfile, pprof.StartCPUProfile)
	return err
}

// startRecording creates path (nothing if it is empty) and starts start on
// it, returning the file to close once it is stopped; flag names it in
// errors.
func startRecording(flag, path string, start func(io.Writer) error) (*os.File, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, withCode(exitUsage, fmt.Errorf("%s: %w", flag, err))
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, withCode(exitFailure, fmt.Errorf("%s: %w", flag, err))
	}
	return f, nil
}

// stopProfiles writes the profiles started or asked for; a failure is
// reported on standard error and does not change the command's outcome.
func (a *app) stopProfiles() {
	if a.traceOut != nil {
		trace.Stop()
		if err := a.traceOut.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "xenmig: --trace:", err)
		}
		a.traceOut = nil
	}
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
