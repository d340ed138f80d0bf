/*
 * keytier_audit_verify_chains: the audit truth of the whole service
 * (DESIGN.md §2 "Audit across nodes").  The store knows every node chain
 * (audit_chains: log id, node, the indices it was given); each chain's
 * file is checked as a log alone (chain, anchor, the service token's
 * register: keytier_audit_verify_anchored), then as one node's chain
 * (its node, indices rising, none above what the store gave it), then
 * across chains: no global index in two of them.  A gap in the indices is
 * an index an append took and never used (it died, or its write failed,
 * between taking the index and writing the line): no record has it, and
 * none ever will.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "audit.h"
#include "kt_lib.h"

/* A chain while it is checked: its row (none for a listed file the store
 * does not know) and the global indices its file holds. */
struct kt_chain_work {
    struct kt_chain_rec row;
    bool known;
    uint64_t *indices;
    uint64_t n_indices;
};

/* The verdict's weight: the worst one is the answer. */
static int kt_chain_rank(keytier_err e)
{
    if (e == KEYTIER_E_AUDIT_TAMPERED)
        return 3;
    if (e == KEYTIER_E_AUDIT_UNANCHORED)
        return 1;
    return e == KEYTIER_OK ? 0 : 2;
}

/* Sets c's verdict to e with the thread's current detail. */
static void kt_chain_judge(keytier_audit_chain *c, keytier_err e)
{
    c->result = e;
    if (e != KEYTIER_OK)
        kt_strlcpy(c->reason, keytier_last_error_detail(), sizeof c->reason);
    else
        c->reason[0] = '\0';
}

/* Where chain w's file is: the listed file holding its log, else
 * dir/its file name, else where its node wrote it. */
static void kt_chain_locate(const struct kt_chain_work *w, const char *dir,
                            const char *const *files,
                            char (*ids)[KEYTIER_ID_SIZE], size_t n_files,
                            bool *claimed, keytier_audit_chain *c)
{
    for (size_t i = 0; i < n_files; i++)
        if (!strcmp(ids[i], w->row.log_id)) {
            claimed[i] = true;
            kt_strlcpy(c->path, files[i], sizeof c->path);
            return;
        }
    if (dir != NULL) {
        const char *base = strrchr(w->row.path, '/');
        int n = snprintf(c->path, sizeof c->path, "%s/%s", dir,
                         base ? base + 1 : w->row.path);
        if (n < 0 || (size_t)n >= sizeof c->path)
            c->path[0] = '\0'; /* no such file: reported missing */
        return;
    }
    kt_strlcpy(c->path, w->row.path, sizeof c->path);
}

/* The chain's file as one node's chain the store knows: its log, its
 * node, no index above what the store gave it. */
static keytier_err kt_chain_rules(const struct kt_chain_work *w,
                                  const keytier_audit_chain *c,
                                  const kt_audit_scan_result *scan)
{
    if (strcmp(c->report.log_id, w->row.log_id) != 0)
        return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                      "%s holds log %s, not node %s's chain %s: replaced",
                      c->path, c->report.log_id, w->row.node, w->row.log_id);
    if (scan->indexed > 0 && strcmp(scan->node, w->row.node) != 0)
        return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                      "%s: records of node %s in the chain of node %s", c->path,
                      scan->node, w->row.node);
    if (scan->indexed > 0 && scan->last_index > w->row.last_index)
        return kt_err(
            KEYTIER_E_AUDIT_TAMPERED,
            "%s: global index %" PRIu64 " is above the last one "
            "the store gave node %s's chain (%" PRIu64 "): a forged record",
            c->path, scan->last_index, w->row.node, w->row.last_index);
    return KEYTIER_OK;
}

/* One chain: its file found, checked alone, then as the store's chain. */
static void kt_chain_check(keytier_ctx *ctx, struct kt_chain_work *w,
                           keytier_audit_chain *c)
{
    struct stat st;
    kt_audit_scan_result scan = {.collect = true};

    kt_strlcpy(c->node, w->row.node, sizeof c->node);
    kt_strlcpy(c->log_id, w->row.log_id, sizeof c->log_id);
    if (w->known && stat(c->path, &st) != 0 && errno == ENOENT) {
        kt_chain_judge(
            c, kt_err(KEYTIER_E_AUDIT_TAMPERED,
                      "node %s's chain (log %s, global indices %" PRIu64
                      "..%" PRIu64 ") is missing: no file at %s (deleted or "
                      "moved)",
                      w->row.node, w->row.log_id, w->row.first_index,
                      w->row.last_index, c->path));
        return;
    }
    keytier_err e = keytier_audit_verify_anchored(ctx, c->path, &c->report);
    kt_chain_judge(c, e);
    if (e == KEYTIER_E_AUDIT_TAMPERED)
        return;
    e = kt_audit_scan(c->path, &scan);
    if (e == KEYTIER_OK && w->known)
        e = kt_chain_rules(w, c, &scan);
    else if (e == KEYTIER_OK && scan.indexed > 0)
        e = kt_err(KEYTIER_E_AUDIT_TAMPERED,
                   "%s (log %s) holds global indices, but the store knows no "
                   "such chain",
                   c->path, c->report.log_id);
    if (e != KEYTIER_OK && kt_chain_rank(e) >= kt_chain_rank(c->result))
        kt_chain_judge(c, e);
    if (!w->known)
        kt_strlcpy(c->node, scan.node, sizeof c->node);
    c->first_index = scan.first_index;
    c->last_index = scan.last_index;
    w->indices = scan.indices;
    w->n_indices = scan.indexed;
}

struct kt_index_at {
    uint64_t index;
    size_t chain;
};

static int kt_index_cmp(const void *x, const void *y)
{
    const struct kt_index_at *a = x, *b = y;
    return a->index < b->index ? -1 : a->index > b->index;
}

/* No global index in two chains; *indexed gets how many there are. */
static keytier_err kt_chains_unique(const struct kt_chain_work *w,
                                    keytier_audit_chains_report *r)
{
    size_t n = 0, k = 0;
    for (size_t i = 0; i < r->n_chains; i++)
        n += w[i].n_indices;
    r->indexed = n;
    if (n == 0)
        return KEYTIER_OK;
    struct kt_index_at *all = calloc(n, sizeof *all);
    if (all == NULL)
        return kt_err(KEYTIER_E_NOMEM, "audit chains: global indices");
    for (size_t i = 0; i < r->n_chains; i++)
        for (uint64_t j = 0; j < w[i].n_indices; j++)
            all[k++] = (struct kt_index_at){w[i].indices[j], i};
    qsort(all, n, sizeof *all, kt_index_cmp);
    keytier_err e = KEYTIER_OK;
    for (size_t i = 1; i < n && e == KEYTIER_OK; i++) {
        if (all[i].index != all[i - 1].index)
            continue;
        keytier_audit_chain *a = &r->chains[all[i - 1].chain];
        keytier_audit_chain *b = &r->chains[all[i].chain];
        e = kt_err(KEYTIER_E_AUDIT_TAMPERED,
                   "global index %" PRIu64 " is in the chains of node %s (%s) "
                   "and node %s (%s): a record copied or forged",
                   all[i].index, a->node, a->path, b->node, b->path);
        kt_chain_judge(b, e);
        kt_chain_judge(a, e);
    }
    free(all);
    return e;
}

/* The worst verdict of the chains, its detail naming the chain. */
static keytier_err kt_chains_verdict(const keytier_audit_chains_report *r)
{
    const keytier_audit_chain *worst = NULL;
    for (size_t i = 0; i < r->n_chains; i++)
        if (worst == NULL ||
            kt_chain_rank(r->chains[i].result) > kt_chain_rank(worst->result))
            worst = &r->chains[i];
    if (worst == NULL || worst->result == KEYTIER_OK)
        return KEYTIER_OK;
    return kt_err(worst->result, "node %s (%s): %s",
                  worst->node[0] ? worst->node : "-", worst->path,
                  worst->reason);
}

/* The listed files' log ids ("" when a file has none to read). */
static void kt_chains_file_ids(const char *const *files, size_t n,
                               char (*ids)[KEYTIER_ID_SIZE])
{
    for (size_t i = 0; i < n; i++)
        if (kt_audit_log_id(files[i], ids[i]) != KEYTIER_OK)
            ids[i][0] = '\0';
}

/*
 * A chain whose first append took its index and died (or failed its
 * write) before record 1: one index, no anchor row, and no file holding
 * its log.  Its index is a gap, not a chain.  (A log whose single record
 * was never anchored, then deleted, reads the same: the records after the
 * anchor are what an anchor cannot vouch for, SECURITY.md.)
 */
static bool kt_chain_ghost(keytier_ctx *ctx, const struct kt_chain_rec *row,
                           const char *path)
{
    char id[KEYTIER_ID_SIZE];
    struct kt_anchor_rec *anc = NULL;
    if (row->first_index != row->last_index ||
        (kt_audit_log_id(path, id) == KEYTIER_OK && !strcmp(id, row->log_id)) ||
        (anc = calloc(1, sizeof *anc)) == NULL)
        return false;
    bool none = kt_store_anchor_get(ctx->store, row->log_id, anc) ==
                KEYTIER_E_NOT_FOUND;
    free(anc);
    return none;
}

/* The store's chains and the listed files no chain claimed, as work. */
static keytier_err kt_chains_plan(keytier_ctx *ctx, const char *dir,
                                  const char *const *files, size_t n_files,
                                  struct kt_chain_work **work,
                                  keytier_audit_chains_report *r)
{
    struct kt_chain_rec *rows = NULL;
    size_t n = 0;
    keytier_err e =
        kt_store_audit_chains(ctx->store, &rows, &n, &r->highest_index);
    char(*ids)[KEYTIER_ID_SIZE] = calloc(n_files + 1, sizeof *ids);
    bool *claimed = calloc(n_files + 1, sizeof *claimed);
    if (e == KEYTIER_OK &&
        (ids == NULL || claimed == NULL ||
         !(*work = calloc(n + n_files + 1, sizeof **work)) ||
         !(r->chains = calloc(n + n_files + 1, sizeof *r->chains))))
        e = kt_err(KEYTIER_E_NOMEM, "audit chains");
    if (e == KEYTIER_OK) {
        kt_chains_file_ids(files, n_files, ids);
        for (size_t i = 0; i < n; i++) {
            size_t k = r->n_chains;
            (*work)[k] = (struct kt_chain_work){.row = rows[i], .known = true};
            kt_chain_locate(&(*work)[k], dir, files, ids, n_files, claimed,
                            &r->chains[k]);
            if (!kt_chain_ghost(ctx, &rows[i], r->chains[k].path))
                r->n_chains++;
            else /* the slot is the next one's */
                memset(&(*work)[k], 0, sizeof(*work)[k]);
        }
        for (size_t i = 0; i < n_files; i++)
            if (!claimed[i])
                kt_strlcpy(r->chains[r->n_chains++].path, files[i],
                           sizeof r->chains[0].path);
    }
    free(rows);
    free(ids);
    free(claimed);
    return e;
}

KEYTIER_API keytier_err keytier_audit_verify_chains(
    keytier_ctx *ctx, const char *dir, const char *const *files, size_t n_files,
    keytier_audit_chains_report *out)
{
    struct kt_chain_work *work = NULL;
    kt_err_clear();
    if (ctx == NULL || out == NULL || (n_files > 0 && files == NULL))
        return kt_err(KEYTIER_E_ARGS, "audit verify: context missing");
    memset(out, 0, sizeof *out);
    keytier_err e = kt_chains_plan(ctx, dir, files, n_files, &work, out);
    if (e == KEYTIER_OK && out->n_chains == 0) {
        /* Logs written before nodes: the context's own, alone. */
        e = keytier_audit_log_path(ctx, out->chains[0].path,
                                   sizeof out->chains[0].path);
        out->n_chains = e == KEYTIER_OK ? 1 : 0;
    }
    for (size_t i = 0; e == KEYTIER_OK && i < out->n_chains; i++) {
        kt_chain_check(ctx, &work[i], &out->chains[i]);
        out->records += out->chains[i].report.records;
    }
    if (e == KEYTIER_OK)
        e = kt_chains_unique(work, out);
    if (e == KEYTIER_OK || e == KEYTIER_E_AUDIT_TAMPERED) {
        e = kt_chains_verdict(out);
        /* Unused indices, when every chain was read to its end. */
        if (e != KEYTIER_E_AUDIT_TAMPERED && out->highest_index > out->indexed)
            out->gaps = out->highest_index - out->indexed;
    }
    if (e == KEYTIER_OK)
        kt_err_clear(); /* no chain's detail stands for the whole */
    for (size_t i = 0; work != NULL && i < out->n_chains; i++)
        free(work[i].indices);
    free(work);
    return e;
}

KEYTIER_API void
keytier_audit_chains_report_free(keytier_audit_chains_report *r)
{
    if (r == NULL)
        return;
    free(r->chains);
    memset(r, 0, sizeof *r);
}
