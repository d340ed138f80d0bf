/*
 * Audit anchors in the store: the head of each audit log (its Seq and
 * Hash) as last anchored, with the service token's HMAC over it, kept
 * outside the log file (audit.h).
 */
#include <string.h>
#include <time.h>

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

/* ---- node chains and the global index (schema 10) ---------------------- */

static keytier_err kt_index_next(struct kt_store *st, uint64_t *index)
{
    struct kt_stmt s;
    bool row = false;
    /* UPDATE ... RETURNING: SQLite 3.35 and PostgreSQL alike; the row
     * lock (BEGIN IMMEDIATE here, the UPDATE's own in PostgreSQL) hands
     * each value out once. */
    kt_stmt_prep(&s, st, "take audit index",
                 "UPDATE audit_counter SET value = value + 1 WHERE name = "
                 "'global' RETURNING value");
    keytier_err e = kt_stmt_step(&s, &row);
    if (e == KEYTIER_OK && row) {
        int64_t v = kt_stmt_col_int64(&s, 0);
        e = kt_stmt_err(&s);
        *index = v > 0 ? (uint64_t)v : 0;
    }
    if (e == KEYTIER_OK && (!row || *index == 0))
        e = kt_err(KEYTIER_E_STORE, "take audit index: no counter row");
    if (e == KEYTIER_OK)
        e = kt_stmt_exec(&s); /* to its end */
    kt_stmt_done(&s);
    return e;
}

static keytier_err kt_chain_note(struct kt_store *st, const char *log_id,
                                 const char *node, const char *path,
                                 uint64_t index)
{
    struct kt_stmt s;
    /* A chain stays its first node's: another node's row is left as it
     * is, and the caller refuses the record. */
    kt_stmt_prep(&s, st, "record audit chain",
                 "INSERT INTO audit_chains (log_id, node, path, first_index, "
                 "last_index, created) VALUES (?1, ?2, ?3, ?4, ?4, ?5) "
                 "ON CONFLICT (log_id) DO UPDATE SET last_index = "
                 "excluded.last_index, path = excluded.path WHERE "
                 "audit_chains.node = excluded.node");
    kt_stmt_bind_text(&s, 1, log_id);
    kt_stmt_bind_text(&s, 2, node);
    kt_stmt_bind_text(&s, 3, path);
    kt_stmt_bind_int64(&s, 4, (int64_t)index);
    kt_stmt_bind_int64(&s, 5, (int64_t)time(NULL));
    keytier_err e = kt_stmt_exec(&s);
    kt_stmt_done(&s);
    if (e == KEYTIER_OK && kt_db_changes(st) != 1)
        e = kt_err(KEYTIER_E_AUDIT_NODE,
                   "audit log %s (log %s) is another node's chain, not node "
                   "%s's: give each node its own avail.audit_log",
                   path, log_id, node);
    return e;
}

keytier_err kt_store_audit_index_take(struct kt_store *st, const char *log_id,
                                      const char *node, const char *path,
                                      uint64_t *index)
{
    pthread_mutex_lock(&st->mu);
    /* The index must outlive a power loss like the record it goes with
     * (the log is fdatasync'ed): this commit is synced in full, the rest
     * of the store keeps synchronous=NORMAL.  PostgreSQL: a commit is
     * durable with synchronous_commit on, its default. */
    bool sqlite = st->pg == NULL;
    keytier_err e =
        sqlite ? kt_db_exec(st, "take audit index", "PRAGMA synchronous=FULL")
               : KEYTIER_OK;
    if (e == KEYTIER_OK)
        e = kt_db_begin(st);
    if (e == KEYTIER_OK) {
        e = kt_index_next(st, index);
        if (e == KEYTIER_OK)
            e = kt_chain_note(st, log_id, node, path, *index);
        if (e == KEYTIER_OK)
            e = kt_db_commit(st);
        else
            kt_db_rollback(st);
    }
    keytier_err back =
        sqlite ? kt_db_exec(st, "take audit index", "PRAGMA synchronous=NORMAL")
               : KEYTIER_OK;
    if (e == KEYTIER_OK)
        e = back;
    pthread_mutex_unlock(&st->mu);
    return e;
}

static keytier_err kt_chain_row(struct kt_stmt *s, void *p)
{
    struct kt_chain_rec *c = p;
    kt_stmt_col_text(s, 0, c->log_id, sizeof c->log_id);
    kt_stmt_col_text(s, 1, c->node, sizeof c->node);
    kt_stmt_col_text(s, 2, c->path, sizeof c->path);
    int64_t first = kt_stmt_col_int64(s, 3), last = kt_stmt_col_int64(s, 4);
    keytier_err e = kt_stmt_err(s);
    if (e == KEYTIER_OK && (first < 1 || last < first))
        e = kt_err(KEYTIER_E_AUDIT_TAMPERED,
                   "the store's row of audit chain %s is malformed", c->log_id);
    c->first_index = (uint64_t)first;
    c->last_index = (uint64_t)last;
    return e;
}

keytier_err kt_store_audit_chains(struct kt_store *st,
                                  struct kt_chain_rec **out, size_t *n,
                                  uint64_t *highest)
{
    struct kt_stmt s;
    bool row = false;
    void *rows = NULL;
    size_t count = 0;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "audit counter",
                 "SELECT value FROM audit_counter WHERE name = 'global'");
    keytier_err e = kt_stmt_step(&s, &row);
    if (e == KEYTIER_OK && row) {
        int64_t v = kt_stmt_col_int64(&s, 0);
        e = kt_stmt_err(&s);
        *highest = v > 0 ? (uint64_t)v : 0;
    } else if (e == KEYTIER_OK) {
        e = kt_err(KEYTIER_E_STORE, "audit counter: no row");
    }
    kt_stmt_done(&s);
    if (e == KEYTIER_OK) {
        kt_stmt_prep(&s, st, "audit chains",
                     "SELECT log_id, node, path, first_index, last_index "
                     "FROM audit_chains ORDER BY first_index");
        e = kt_stmt_collect(&s, sizeof(struct kt_chain_rec), 8, kt_chain_row,
                            &rows, &count);
    }
    pthread_mutex_unlock(&st->mu);
    if (e == KEYTIER_OK) {
        *out = rows;
        *n = count;
    }
    return e;
}
