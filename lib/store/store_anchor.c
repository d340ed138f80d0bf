/*
 * Audit anchors in the store: the head of each audit log (its Seq and
 * Hash) as last anchored, with the service token's HMAC over it, kept
 * outside the log file (audit.h).
 */
#include <string.h>

#include "store_stmt.h"

#define KT_ANCHOR_COLS "log_id, path, seq, hash, mac, updated"

keytier_err kt_store_anchor_put(struct kt_store *st,
                                const struct kt_anchor_rec *a, bool *applied)
{
    struct kt_stmt s;
    *applied = false;
    pthread_mutex_lock(&st->mu);
    /* One statement, one transaction.  Never backwards: an anchor at or
     * past this Seq stays (a log cut back and appended to again must keep
     * the evidence of what it had). */
    kt_stmt_prep(
        &s, st, "audit anchor",
        "INSERT INTO audit_anchors (" KT_ANCHOR_COLS ") VALUES "
        "(?1, ?2, ?3, ?4, ?5, ?6) "
        "ON CONFLICT (log_id) DO UPDATE SET path = excluded.path, "
        "seq = excluded.seq, hash = excluded.hash, mac = excluded.mac, "
        "updated = excluded.updated WHERE excluded.seq > "
        "audit_anchors.seq");
    kt_stmt_bind_text(&s, 1, a->log_id);
    kt_stmt_bind_text(&s, 2, a->path);
    kt_stmt_bind_int64(&s, 3, (int64_t)a->seq);
    kt_stmt_bind_text(&s, 4, a->hash);
    kt_stmt_bind_blob(&s, 5, a->mac, KT_ANCHOR_MAC_SIZE);
    kt_stmt_bind_int64(&s, 6, a->updated);
    keytier_err e = kt_stmt_exec(&s);
    if (e == KEYTIER_OK)
        *applied = kt_db_changes(st) > 0;
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}

/* The row of KT_ANCHOR_COLS the statement finds, KEYTIER_E_NOT_FOUND
 * (naming `what`) when none. */
static keytier_err kt_anchor_read(struct kt_stmt *s, struct kt_anchor_rec *out,
                                  const char *what)
{
    bool row;
    keytier_err e = kt_stmt_step(s, &row);
    if (e != KEYTIER_OK)
        return e;
    if (!row)
        return kt_err(KEYTIER_E_NOT_FOUND, "no audit anchor for %s", what);
    memset(out, 0, sizeof *out);
    kt_stmt_col_text(s, 0, out->log_id, sizeof out->log_id);
    kt_stmt_col_text(s, 1, out->path, sizeof out->path);
    int64_t seq = kt_stmt_col_int64(s, 2);
    kt_stmt_col_text(s, 3, out->hash, sizeof out->hash);
    size_t mac_len = 0;
    bool mac = kt_stmt_col_blob(s, 4, out->mac, sizeof out->mac, &mac_len) &&
               mac_len == KT_ANCHOR_MAC_SIZE;
    out->updated = kt_stmt_col_int64(s, 5);
    if ((e = kt_stmt_err(s)) != KEYTIER_OK)
        return e;
    /* A row of another shape is not an anchor: refused like a bad MAC. */
    if (seq < 1 || !mac)
        return kt_err(KEYTIER_E_AUDIT_TAMPERED,
                      "audit anchor of log %s is malformed", out->log_id);
    out->seq = (uint64_t)seq;
    return KEYTIER_OK;
}

keytier_err kt_store_anchor_get(struct kt_store *st, const char *log_id,
                                struct kt_anchor_rec *out)
{
    struct kt_stmt s;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "audit anchor",
                 "SELECT " KT_ANCHOR_COLS " FROM audit_anchors WHERE "
                 "log_id = ?1");
    kt_stmt_bind_text(&s, 1, log_id);
    keytier_err e = kt_anchor_read(&s, out, log_id);
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_anchor_other(struct kt_store *st, const char *path,
                                  const char *log_id, struct kt_anchor_rec *out)
{
    struct kt_stmt s;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "audit anchor",
                 "SELECT " KT_ANCHOR_COLS " FROM audit_anchors WHERE "
                 "path = ?1 AND log_id != ?2 ORDER BY updated DESC, rowid "
                 "DESC LIMIT 1");
    kt_stmt_bind_text(&s, 1, path);
    kt_stmt_bind_text(&s, 2, log_id);
    keytier_err e = kt_anchor_read(&s, out, path);
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}
