// Package sim is a simulated Xen 4.17 host: an implementation of
// hypervisor.Hypervisor, hypervisor.Pager and hypervisor.Inspector with Xen's
// semantics, on which every test, benchmark and the demo run.
//
// # The model
//
// A Host holds domains, a xenstore tree and nothing global: two Hosts, in one
// process or in two, are two independent machines, as the sender and receiver
// of a migration are.
//
// Guest memory is real memory: MemoryPages pages of 4 KiB over the gfn space
// [0, MemoryPages), with holes that are never populated; an anonymous
// private mapping per domain, or a run of the host's resident memory
// (WithResidentMemory), faulted in when the host was made, as a Xen host's
// RAM is. Each gfn has a p2m type changed only by atomic
// compare-and-swap: unpopulated, RAM, or one of the mem_paging states
// (nominated "paging-out", evicted "paged", "paging-in"). Depopulate and
// Evict drop a frame: madvise(MADV_DONTNEED), or zeroed in resident memory;
// Destroy unmaps it all, or gives it back to the host zeroed.
//
// vCPUs are goroutines, each running a workload program step by step. Step
// boundaries are the only points where a vCPU pauses, stops at StopAt or
// is paced; Pause is reference counted and returns once every vCPU is parked
// at a boundary or blocked on a paging fault. The vCPU context that SaveCPU
// returns is the program state itself: PRNG state, step and operation
// counters, an accumulator of values read, the allocation bitmap of its
// arena and the program's own variables (a quicksort's explicit stack, a
// compile job's phase and page lists).
//
// Every guest memory access goes through an accessor: one atomic load of the
// p2m type when the page is RAM; otherwise the vCPU takes a fault as Xen's
// p2m_mem_paging_populate does. It claims one of the ring's 8 slots (waiting
// for one if all are taken), posts a request, is paused until the pager
// answers it with Resume, and then retries the access. Slots are freed when
// the pager answers, as Xen frees them when it consumes a response. The
// pager learns of a request after the host's notification latency. A
// touch of a paged gfn with no pager attached, or of an unpopulated gfn,
// crashes the domain. Writes mark the log-dirty bitmap after the data is
// written, so a clean racing with a write never loses it.
//
// The guest knows which of its pages are in use: static pages and the pages
// each vCPU has allocated in its arena. Free pages are always zero, because a
// freed page is zeroed first (as Linux does with init_on_free=1). The
// balloon driver, guest code that runs only while the domain runs, watches
// memory/target and releases free pages (highest gfns first) or populates
// ballooned-out ones; an allocation of a ballooned-out page populates it
// first. Because free pages are zero, ballooning never changes the digest.
//
// # Costs
//
// By default every call runs at the machine's speed. WithCosts makes the
// host charge what each dom0 call into the hypervisor costs on the host
// modelled: XenCosts estimates a real Xen host from the lab's measures,
// LabCosts are the lab's own (see Costs, and docs/XEN.md for the table).
// The p2m operations of a domain are served one at a time, as Xen's p2m
// lock serializes them; costs are paid by sleeping once a millisecond is
// owed, never by spinning.
//
// # Determinism
//
// A domain's final memory depends only on its spec and the number of steps
// each vCPU runs, never on how vCPUs interleave, on pauses, on migration or
// on paging. The memory-digest oracle of every migration test rests on these
// rules, which every workload follows:
//
//   - The layout (static pages, one arena per vCPU) is a function of the
//     spec alone, so both ends of a migration compute the same one.
//   - Static pages hold boot content and are never written after boot. Every
//     other page in use belongs to exactly one vCPU, which alone writes it.
//   - A vCPU folds into its context only values read from static pages or
//     from its own pages. It reads other vCPUs' pages too, so that faults
//     range over the whole guest, but discards what it reads there.
//   - Every value written derives from the writer's own context.
//   - A vCPU allocates only in its own arena, lowest free page first, so
//     which page an allocation returns depends on its context alone.
//
// # Workloads
//
// Idle writes one word per step. Stress reads or writes whole pages of a
// working set, in order or at random (the post-copy paper's stress test).
// KernelCompile churns allocations and grows a file cache. WebServer reads
// static pages with Zipf-distributed popularity and logs now and then.
// Quicksort sorts per-vCPU arrays incrementally. Probe performs the accesses
// tests queue with Host.Touch.
package sim
