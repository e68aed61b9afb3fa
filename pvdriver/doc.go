// Package pvdriver is the guest side of xenmig's dynamic self-ballooning
// (DSB, Hines, Deshpande and Gopalan, VEE 2009): an agent inside a Linux
// domU that keeps the domain's memory close to what the guest really needs,
// so that free pages never cross the network when dom0 migrates it.
//
// It has three layers:
//
//   - Target, the policy: a pure function of committed memory, the current
//     balloon target, the ceiling and whether dom0 asked for a squeeze. The
//     simulator's guest model calls the same function, so what is tested
//     there is what runs in a guest.
//   - Guest access: the Linux Xen balloon driver's sysfs files
//     (SysfsBalloon), /proc/meminfo (ProcMeminfo), and xenstore through
//     /dev/xen/xenbus with the wire protocol of internal/xsproto (no cgo).
//     All are rooted at a configurable directory, so tests run against a
//     temporary one.
//   - Agent, the loop of cmd/xenmig-balloond: a tick every Interval, and the
//     squeeze protocol with dom0 on ControlKey and DataDir, documented in
//     docs/BALLOON.md.
//
// pvdriver is guest-side: it imports none of dom0's packages.
package pvdriver
