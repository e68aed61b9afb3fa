// Package xenctrl drives a real Xen 4.17 host through libxenctrl,
// libxenevtchn, libxenforeignmemory and libxenstore, implementing the
// hypervisor.Hypervisor contract the migration engine uses.
//
// The cgo bindings are compiled only with the build tag `xen` on Linux
// (`make build-xen`, or `go build -tags xen`), which needs Debian's
// libxen-dev and pkg-config. Without the tag the package still builds: Open
// then returns an error saying how to rebuild, and Doctor reports that the
// backend is missing. The simulator (package xenctrl/sim) is the backend of
// such builds.
//
// The package follows the layout of vishvananda/netlink: the logic that does
// not need C (vm_event ring index arithmetic, the encoding of vm_event
// requests and responses mirroring the C layout, the errno to sentinel error
// mapping, bitmap conversion, the checks of a guest's preconditions, the
// doctor report) lives in files that build everywhere and is tested
// everywhere; the cgo files are a thin edge that calls the libraries and
// turns their failures into *Error values.
//
// Nothing in this package can be exercised without a Xen hypervisor: tests
// that need one skip when /dev/xen/privcmd is absent. docs/XEN.md describes
// the host requirements and the procedure for testing on a real Xen host.
package xenctrl
