/*
 * A node's audit chain (DESIGN.md §2 "Audit across nodes"): every record
 * the context writes carries its node's name and a global index taken
 * from the store, under the log's append lock, before the line is written
 * (audit.h, kt_audit_set_node).  The store's counter hands each index out
 * once and records which chain (log) of which node took it.
 */
#include "audit.h"
#include "avail.h"
#include "kt_lib.h"

static keytier_err kt_node_index(void *arg, const char *log_id,
                                 const char *node, const char *path,
                                 uint64_t *index)
{
    keytier_ctx *ctx = arg;
    return kt_store_audit_index_take(ctx->store, log_id, node, path, index);
}

void kt_audit_node_attach(keytier_ctx *ctx, kt_audit *a)
{
    if (ctx->store == NULL || ctx->cfg.node == NULL)
        return;
    kt_audit_set_node(a, ctx->cfg.node, kt_node_index, ctx);
}
