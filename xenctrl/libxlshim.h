/*
 * The libxl (libxenlight) side of package xenctrl (build tag xen): what a
 * migration needs of the toolstack's own library, a context whose children
 * the Go side reaps, and three calls that cgo cannot make in one piece
 * (they init and dispose a libxl_domain_config around the call).
 */
#ifndef XENMIG_LIBXLSHIM_H
#define XENMIG_LIBXLSHIM_H

#include <stdint.h>
#include <stdlib.h>
#include <libxl.h>
#include <libxl_utils.h>

/*
 * libxl_ctx_alloc with a logger of its own on stderr (*lg: errors, or
 * details if verbose; the caller destroys it after libxl_ctx_free), then
 * libxl_childproc_setmode(libxl_sigchld_owner_mainloop): libxl installs no
 * SIGCHLD handler (the Go runtime owns signals); the caller calls
 * libxl_childproc_sigchld_occurred on every SIGCHLD instead. Returns NULL
 * with *rc set to the libxl error.
 */
libxl_ctx *xenmig_libxl_open(int verbose, xentoollog_logger **lg, int *rc);

/*
 * libxl_retrieve_domain_configuration of domid, as JSON
 * (libxl_domain_config_to_json), as `xl migrate` sends it. The caller frees
 * the string. Returns NULL with *rc set to the libxl error (ERROR_NOMEM,
 * 0 meaning the JSON conversion failed).
 */
char *xenmig_libxl_config_json(libxl_ctx *ctx, uint32_t domid, int *rc);

/*
 * libxl_domain_config_from_json(json), the name replaced by name, then
 * libxl_domain_create_new synchronously: libxl builds the domain, its
 * devices and backends and leaves it paused (xl unpauses unless -p).
 * Returns the libxl error (0 on success) and the new domid.
 */
int xenmig_libxl_create_paused(libxl_ctx *ctx, const char *json, const char *name,
                               uint32_t *domid);

#endif
