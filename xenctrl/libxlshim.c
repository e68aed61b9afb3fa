//go:build xen && linux

#include "libxlshim.h"

#include <stdio.h>
#include <string.h>

static const libxl_childproc_hooks xenmig_childproc_hooks = {
    .chldowner = libxl_sigchld_owner_mainloop,
};

libxl_ctx *xenmig_libxl_open(int verbose, xentoollog_logger **lg, int *rc)
{
    libxl_ctx *ctx = NULL;

    *lg = (xentoollog_logger *)xtl_createlogger_stdiostream(
        stderr, verbose ? XTL_DETAIL : XTL_ERROR, 0);
    *rc = libxl_ctx_alloc(&ctx, LIBXL_VERSION, 0, *lg);
    if (*rc) {
        if (*lg)
            xtl_logger_destroy(*lg);
        *lg = NULL;
        return NULL;
    }
    libxl_childproc_setmode(ctx, &xenmig_childproc_hooks, NULL);
    return ctx;
}

char *xenmig_libxl_config_json(libxl_ctx *ctx, uint32_t domid, int *rc)
{
    libxl_domain_config d;
    char *json = NULL;

    libxl_domain_config_init(&d);
    *rc = libxl_retrieve_domain_configuration(ctx, domid, &d, NULL);
    if (*rc == 0)
        json = libxl_domain_config_to_json(ctx, &d);
    libxl_domain_config_dispose(&d);
    return json;
}

int xenmig_libxl_create_paused(libxl_ctx *ctx, const char *json, const char *name,
                               uint32_t *domid)
{
    libxl_domain_config d;
    int rc;

    libxl_domain_config_init(&d);
    rc = libxl_domain_config_from_json(ctx, &d, json);
    if (rc == 0) {
        free(d.c_info.name);
        d.c_info.name = strdup(name);
        if (d.c_info.name == NULL)
            rc = ERROR_NOMEM;
    }
    if (rc == 0)
        rc = libxl_domain_create_new(ctx, &d, domid, NULL, NULL);
    libxl_domain_config_dispose(&d);
    return rc;
}
