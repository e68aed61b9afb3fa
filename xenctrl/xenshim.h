/*
 * The C side of package xenctrl (build tag xen): the headers, one private
 * declaration, and the few helpers cgo cannot express (hypercall buffers,
 * the xentoollog logger). Compiled only with xenshim.c under the xen tag.
 */
#ifndef XENMIG_XENSHIM_H
#define XENMIG_XENSHIM_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include <xenctrl.h> /* defines __XEN_TOOLS__, needed by xen/vm_event.h */
#include <xenguest.h>
#include <xenevtchn.h>
#include <xenforeignmemory.h>
#include <xenstore.h>
#include <xentoollog.h>
#include <xen/vm_event.h>

/*
 * Exported by libxenctrl (VERS_4.17.0) but declared only in its private
 * xc_private.h: XEN_DOMCTL_getpageframeinfo3 over arr, at most 1024 gfns,
 * each entry replaced by its XEN_DOMCTL_PFINFO_* type.
 */
int xc_get_pfn_type_batch(xc_interface *xch, uint32_t dom, unsigned int num,
                          xen_pfn_t *arr);

/*
 * xc_logdirty_control(sop = XEN_DOMCTL_SHADOW_OP_CLEAN or _PEEK) into a
 * hypercall buffer the helper allocates and frees, copying the bitmap of
 * `pages` gfns into out ((pages+63)/64 words). Returns < 0 with errno set.
 */
long long xenmig_logdirty(xc_interface *xch, uint32_t dom, unsigned int sop,
                          uint64_t *out, unsigned long pages);

/*
 * A domain's CPU policy (xc_cpu_policy_init, xc_cpu_policy_get_domain,
 * xc_cpu_policy_serialise, xc_cpu_policy_destroy) into caller arrays of
 * *nr_leaves and *nr_msrs entries (sized by xc_cpu_policy_get_size), which
 * it sets to the counts written. Returns -1 with errno set on failure.
 */
int xenmig_cpu_policy_get(xc_interface *xch, uint32_t dom,
                          xen_cpuid_leaf_t *leaves, uint32_t *nr_leaves,
                          xen_msr_entry_t *msrs, uint32_t *nr_msrs);

/* A logger for the Xen libraries: stderr at XTL_DETAIL if verbose, else
 * only XTL_CRITICAL (the failures come back to Go as errors instead). */
xentoollog_logger *xenmig_logger(int verbose);

/* The C layout facts the Go mirror structs are tested against. */
struct xenmig_layout {
    size_t req_size, rsp_size;
    size_t off_version, off_flags, off_reason, off_vcpu_id, off_altp2m_idx;
    size_t off_u, off_paging_gfn, off_paging_p2mt, off_paging_flags, off_data;
    size_t sring_off_req_prod, sring_off_req_event, sring_off_rsp_prod;
    size_t sring_off_rsp_event, sring_off_pvt, sring_off_ring;
    size_t ring_size;
    unsigned int interface_version, flag_vcpu_paused, flag_foreign;
    unsigned int reason_mem_paging, drop_page, evict_fail;
    unsigned int hvm_param_paging_ring_pfn;
    unsigned int pfinfo_xtab, pfinfo_ltab_mask;
    size_t domaininfo_size;
};
void xenmig_get_layout(struct xenmig_layout *l);

#endif
