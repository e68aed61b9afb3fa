//go:build xen && linux

#include "xenshim.h"

#include <stdio.h>
#include <string.h>

/* Build-time checks of the facts the Go side hard-codes (vmevent.go,
 * ring.go, bitmap.go): a Xen whose headers differ fails to compile here. */
_Static_assert(sizeof(vm_event_request_t) == 400, "vm_event_request_t is not 400 bytes");
_Static_assert(offsetof(vm_event_request_t, u) == 24, "vm_event u not at 24");
_Static_assert(offsetof(vm_event_request_t, u.mem_paging.gfn) == 24, "mem_paging.gfn not at 24");
_Static_assert(offsetof(vm_event_request_t, u.mem_paging.p2mt) == 32, "mem_paging.p2mt not at 32");
_Static_assert(offsetof(vm_event_request_t, u.mem_paging.flags) == 36, "mem_paging.flags not at 36");
_Static_assert(offsetof(vm_event_request_t, data) == 56, "vm_event data not at 56");
_Static_assert(offsetof(struct vm_event_sring, ring) == 64, "vm_event ring header not 64 bytes");
_Static_assert(__CONST_RING_SIZE(vm_event, XC_PAGE_SIZE) == 8, "vm_event ring is not 8 slots");
_Static_assert(VM_EVENT_INTERFACE_VERSION == 7, "VM_EVENT_INTERFACE_VERSION is not 7");
_Static_assert(VM_EVENT_REASON_MEM_PAGING == 3, "VM_EVENT_REASON_MEM_PAGING is not 3");
_Static_assert(VM_EVENT_FLAG_VCPU_PAUSED == 1, "VM_EVENT_FLAG_VCPU_PAUSED is not 1");
_Static_assert(MEM_PAGING_DROP_PAGE == 1 && MEM_PAGING_EVICT_FAIL == 2, "MEM_PAGING flags moved");
_Static_assert(HVM_PARAM_PAGING_RING_PFN == 27, "HVM_PARAM_PAGING_RING_PFN is not 27");
_Static_assert(sizeof(xen_pfn_t) == 8, "xen_pfn_t is not 64-bit");
_Static_assert(sizeof(xen_cpuid_leaf_t) == 24 && sizeof(xen_msr_entry_t) == 16, "CPU policy entries moved");
_Static_assert(sizeof(unsigned long) == 8, "log-dirty bitmap words are not 64-bit");

long long xenmig_logdirty(xc_interface *xch, uint32_t dom, unsigned int sop,
                          uint64_t *out, unsigned long pages)
{
    DECLARE_HYPERCALL_BUFFER(unsigned long, bitmap);
    size_t bytes = ((pages + 63) / 64) * 8;
    int nr = (int)((bytes + XC_PAGE_SIZE - 1) / XC_PAGE_SIZE);
    long long rc;
    int saved;

    if (nr == 0)
        nr = 1;
    bitmap = xc_hypercall_buffer_alloc_pages(xch, bitmap, nr);
    if (bitmap == NULL)
        return -1; /* errno set by the allocator */
    memset(bitmap, 0, (size_t)nr * XC_PAGE_SIZE);

    rc = xc_logdirty_control(xch, dom, sop, HYPERCALL_BUFFER(bitmap), pages, 0, NULL);
    saved = errno;
    if (rc >= 0)
        memcpy(out, bitmap, bytes);
    xc_hypercall_buffer_free_pages(xch, bitmap, nr);
    errno = saved;
    return rc;
}

int xenmig_cpu_policy_get(xc_interface *xch, uint32_t dom,
                          xen_cpuid_leaf_t *leaves, uint32_t *nr_leaves,
                          xen_msr_entry_t *msrs, uint32_t *nr_msrs)
{
    xc_cpu_policy_t *p = xc_cpu_policy_init();
    int rc, saved;

    if (p == NULL)
        return -1;
    rc = xc_cpu_policy_get_domain(xch, dom, p);
    if (rc == 0)
        rc = xc_cpu_policy_serialise(xch, p, leaves, nr_leaves, msrs, nr_msrs);
    saved = errno;
    xc_cpu_policy_destroy(p);
    errno = saved;
    return rc ? -1 : 0;
}

xentoollog_logger *xenmig_logger(int verbose)
{
    return (xentoollog_logger *)xtl_createlogger_stdiostream(
        stderr, verbose ? XTL_DETAIL : XTL_CRITICAL, 0);
}

void xenmig_get_layout(struct xenmig_layout *l)
{
    memset(l, 0, sizeof(*l));
    l->req_size = sizeof(vm_event_request_t);
    l->rsp_size = sizeof(vm_event_response_t);
    l->off_version = offsetof(vm_event_request_t, version);
    l->off_flags = offsetof(vm_event_request_t, flags);
    l->off_reason = offsetof(vm_event_request_t, reason);
    l->off_vcpu_id = offsetof(vm_event_request_t, vcpu_id);
    l->off_altp2m_idx = offsetof(vm_event_request_t, altp2m_idx);
    l->off_u = offsetof(vm_event_request_t, u);
    l->off_paging_gfn = offsetof(vm_event_request_t, u.mem_paging.gfn);
    l->off_paging_p2mt = offsetof(vm_event_request_t, u.mem_paging.p2mt);
    l->off_paging_flags = offsetof(vm_event_request_t, u.mem_paging.flags);
    l->off_data = offsetof(vm_event_request_t, data);
    l->sring_off_req_prod = offsetof(struct vm_event_sring, req_prod);
    l->sring_off_req_event = offsetof(struct vm_event_sring, req_event);
    l->sring_off_rsp_prod = offsetof(struct vm_event_sring, rsp_prod);
    l->sring_off_rsp_event = offsetof(struct vm_event_sring, rsp_event);
    l->sring_off_pvt = offsetof(struct vm_event_sring, pvt);
    l->sring_off_ring = offsetof(struct vm_event_sring, ring);
    l->ring_size = __CONST_RING_SIZE(vm_event, XC_PAGE_SIZE);
    l->interface_version = VM_EVENT_INTERFACE_VERSION;
    l->flag_vcpu_paused = VM_EVENT_FLAG_VCPU_PAUSED;
    l->flag_foreign = VM_EVENT_FLAG_FOREIGN;
    l->reason_mem_paging = VM_EVENT_REASON_MEM_PAGING;
    l->drop_page = MEM_PAGING_DROP_PAGE;
    l->evict_fail = MEM_PAGING_EVICT_FAIL;
    l->hvm_param_paging_ring_pfn = HVM_PARAM_PAGING_RING_PFN;
    l->pfinfo_xtab = XEN_DOMCTL_PFINFO_XTAB;
    l->pfinfo_ltab_mask = XEN_DOMCTL_PFINFO_LTAB_MASK;
    l->domaininfo_size = sizeof(xc_domaininfo_t);
}
