/*
 * Approvers' public keys and approvals of privileged operations in the
 * store (store.h "approvals").  The rows are data, never authority: a key
 * counts only when the configuration pins its fingerprint and a grant only
 * when its signature verifies (lib/trust/approval.c).  What this file
 * guarantees is that a use is one statement: the row is marked used only
 * if it still holds exactly the fields that were verified and nobody used
 * it first.
 */
#include <stdlib.h>
#include <string.h>

#include "store_stmt.h"

#define KT_APPROVAL_COLS                                                       \
    "id, op, tenant, scope, justification, requester, single_use, created, "   \
    "expires, state, approver, approver_key, signature, granted, used, "       \
    "expiry_seen"

keytier_err kt_store_approver_put(struct kt_store *st, const char *name,
                                  const uint8_t *spki, size_t len,
                                  int64_t added)
{
    struct kt_stmt s;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "register approver",
                 "INSERT INTO approvers (name, spki, added) VALUES (?1, ?2, "
                 "?3) ON CONFLICT (name) DO UPDATE SET spki = excluded.spki, "
                 "added = excluded.added");
    kt_stmt_bind_text(&s, 1, name);
    kt_stmt_bind_blob(&s, 2, spki, len);
    kt_stmt_bind_int64(&s, 3, added);
    keytier_err e = kt_stmt_exec(&s);
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_approver_get(struct kt_store *st, const char *name,
                                  uint8_t spki[KT_SPKI_MAX], size_t *len)
{
    struct kt_stmt s;
    bool row;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "read approver",
                 "SELECT spki FROM approvers WHERE name = ?1");
    kt_stmt_bind_text(&s, 1, name);
    keytier_err e = kt_stmt_step(&s, &row);
    if (e == KEYTIER_OK && !row)
        e = kt_err(KEYTIER_E_APPROVER,
                   "approver %s has no public key in the store: register it "
                   "with keytier approval register",
                   name);
    if (e == KEYTIER_OK && !kt_stmt_col_blob(&s, 0, spki, KT_SPKI_MAX, len))
        e = kt_err(KEYTIER_E_APPROVER, "approver %s: stored key too large",
                   name);
    if (e == KEYTIER_OK)
        e = kt_stmt_err(&s);
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_approver_count(struct kt_store *st, size_t *count)
{
    struct kt_stmt s;
    bool row;
    *count = 0;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "count approvers", "SELECT count(*) FROM approvers");
    keytier_err e = kt_stmt_step(&s, &row);
    if (e == KEYTIER_OK && row)
        *count = (size_t)kt_stmt_col_int64(&s, 0);
    if (e == KEYTIER_OK)
        e = kt_stmt_err(&s);
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_approval_insert(struct kt_store *st,
                                     const struct kt_approval_rec *r)
{
    const keytier_approval_info *a = &r->info;
    struct kt_stmt s;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "insert approval request",
                 "INSERT INTO approvals (id, op, tenant, scope, justification, "
                 "requester, single_use, created, expires, state) VALUES "
                 "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
    kt_stmt_bind_text(&s, 1, a->id);
    kt_stmt_bind_int(&s, 2, (int)a->op);
    kt_stmt_bind_text(&s, 3, a->tenant);
    kt_stmt_bind_text(&s, 4, a->scope);
    kt_stmt_bind_text(&s, 5, a->justification);
    kt_stmt_bind_text(&s, 6, a->requester);
    kt_stmt_bind_int(&s, 7, a->single_use ? 1 : 0);
    kt_stmt_bind_int64(&s, 8, a->created);
    kt_stmt_bind_int64(&s, 9, a->expires);
    kt_stmt_bind_int(&s, 10, KEYTIER_APPROVAL_REQUESTED);
    keytier_err e = kt_stmt_exec(&s);
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}

/* One row of KT_APPROVAL_COLS. */
static keytier_err kt_approval_row(struct kt_stmt *s, struct kt_approval_rec *r)
{
    keytier_approval_info *a = &r->info;
    memset(r, 0, sizeof *r);
    kt_stmt_col_text(s, 0, a->id, sizeof a->id);
    a->op = (keytier_approval_op)kt_stmt_col_int(s, 1);
    kt_stmt_col_text(s, 2, a->tenant, sizeof a->tenant);
    kt_stmt_col_text(s, 3, a->scope, sizeof a->scope);
    kt_stmt_col_text(s, 4, a->justification, sizeof a->justification);
    kt_stmt_col_text(s, 5, a->requester, sizeof a->requester);
    a->single_use = kt_stmt_col_int(s, 6) != 0;
    a->created = kt_stmt_col_int64(s, 7);
    a->expires = kt_stmt_col_int64(s, 8);
    a->state = (keytier_approval_state)kt_stmt_col_int(s, 9);
    kt_stmt_col_text(s, 10, a->approver, sizeof a->approver);
    kt_stmt_col_text(s, 11, a->approver_key, sizeof a->approver_key);
    /* A signature of another size is kept empty: it cannot verify. */
    if (!kt_stmt_col_null(s, 12) &&
        !kt_stmt_col_blob(s, 12, r->sig, sizeof r->sig, &r->sig_len))
        r->sig_len = 0;
    a->granted = kt_stmt_col_null(s, 13) ? 0 : kt_stmt_col_int64(s, 13);
    a->used = kt_stmt_col_null(s, 14) ? 0 : kt_stmt_col_int64(s, 14);
    r->expiry_seen = kt_stmt_col_int(s, 15) != 0;
    return kt_stmt_err(s);
}

keytier_err kt_store_approval_get(struct kt_store *st, const char *id,
                                  struct kt_approval_rec *out)
{
    struct kt_stmt s;
    bool row;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "read approval",
                 "SELECT " KT_APPROVAL_COLS " FROM approvals WHERE id = ?1");
    kt_stmt_bind_text(&s, 1, id);
    keytier_err e = kt_stmt_step(&s, &row);
    if (e == KEYTIER_OK && !row)
        e = kt_err(KEYTIER_E_NOT_FOUND, "no approval %s", id);
    if (e == KEYTIER_OK)
        e = kt_approval_row(&s, out);
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}

/* kt_approval_row into the kt_approval_rec at p (kt_stmt_collect). */
static keytier_err kt_approval_row_any(struct kt_stmt *s, void *p)
{
    return kt_approval_row(s, p);
}

keytier_err kt_store_approval_list(struct kt_store *st, const char *tenant,
                                   struct kt_approval_rec **out, size_t *count)
{
    struct kt_stmt s;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "list approvals",
                 "SELECT " KT_APPROVAL_COLS " FROM approvals "
                 "WHERE (?1 IS NULL OR tenant = ?1) ORDER BY created, rowid");
    kt_stmt_bind_text(&s, 1, tenant);
    void *list = NULL;
    keytier_err e =
        kt_stmt_collect(&s, sizeof **out, 8, kt_approval_row_any, &list, count);
    pthread_mutex_unlock(&st->mu);
    if (e == KEYTIER_OK)
        *out = list;
    return e;
}

keytier_err kt_store_approval_grant(struct kt_store *st,
                                    const struct kt_approval_rec *r,
                                    bool *applied)
{
    const keytier_approval_info *a = &r->info;
    struct kt_stmt s;
    *applied = false;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "grant approval",
                 "UPDATE approvals SET state = ?2, approver = ?3, "
                 "approver_key = ?4, signature = ?5, granted = ?6 "
                 "WHERE id = ?1 AND state = ?7");
    kt_stmt_bind_text(&s, 1, a->id);
    kt_stmt_bind_int(&s, 2, KEYTIER_APPROVAL_GRANTED);
    kt_stmt_bind_text(&s, 3, a->approver);
    kt_stmt_bind_text(&s, 4, a->approver_key);
    kt_stmt_bind_blob(&s, 5, r->sig, r->sig_len);
    kt_stmt_bind_int64(&s, 6, a->granted);
    kt_stmt_bind_int(&s, 7, KEYTIER_APPROVAL_REQUESTED);
    keytier_err e = kt_stmt_exec(&s);
    if (e == KEYTIER_OK)
        *applied = kt_db_changes(st) == 1;
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_approval_use(struct kt_store *st,
                                  const struct kt_approval_rec *r, int64_t now,
                                  bool *applied)
{
    const keytier_approval_info *a = &r->info;
    struct kt_stmt s;
    *applied = false;
    pthread_mutex_lock(&st->mu);
    /* Every signed field is compared, so a row edited between the check
     * and this statement is not the one that gets used. */
    kt_stmt_prep(&s, st, "use approval",
                 "UPDATE approvals SET state = ?2, used = ?3 WHERE id = ?1 "
                 "AND state = ?4 AND op = ?5 AND tenant = ?6 AND scope = ?7 "
                 "AND justification = ?8 AND requester = ?9 AND "
                 "single_use = ?10 AND created = ?11 AND expires = ?12 AND "
                 "approver = ?13 AND approver_key = ?14 AND signature = ?15");
    kt_stmt_bind_text(&s, 1, a->id);
    kt_stmt_bind_int(&s, 2, KEYTIER_APPROVAL_USED);
    kt_stmt_bind_int64(&s, 3, now);
    kt_stmt_bind_int(&s, 4, KEYTIER_APPROVAL_GRANTED);
    kt_stmt_bind_int(&s, 5, (int)a->op);
    kt_stmt_bind_text(&s, 6, a->tenant);
    kt_stmt_bind_text(&s, 7, a->scope);
    kt_stmt_bind_text(&s, 8, a->justification);
    kt_stmt_bind_text(&s, 9, a->requester);
    kt_stmt_bind_int(&s, 10, a->single_use ? 1 : 0);
    kt_stmt_bind_int64(&s, 11, a->created);
    kt_stmt_bind_int64(&s, 12, a->expires);
    kt_stmt_bind_text(&s, 13, a->approver);
    kt_stmt_bind_text(&s, 14, a->approver_key);
    kt_stmt_bind_blob(&s, 15, r->sig, r->sig_len);
    keytier_err e = kt_stmt_exec(&s);
    if (e == KEYTIER_OK)
        *applied = kt_db_changes(st) == 1;
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_approval_set_state(struct kt_store *st, const char *id,
                                        int state, bool *applied)
{
    struct kt_stmt s;
    *applied = false;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "change approval state",
                 "UPDATE approvals SET state = ?2 WHERE id = ?1 AND state IN "
                 "(?3, ?4)");
    kt_stmt_bind_text(&s, 1, id);
    kt_stmt_bind_int(&s, 2, state);
    kt_stmt_bind_int(&s, 3, KEYTIER_APPROVAL_REQUESTED);
    kt_stmt_bind_int(&s, 4, KEYTIER_APPROVAL_GRANTED);
    keytier_err e = kt_stmt_exec(&s);
    if (e == KEYTIER_OK)
        *applied = kt_db_changes(st) == 1;
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_approval_undo(struct kt_store *st, const char *id,
                                   int state)
{
    static const char *const undo[] = {
        [KEYTIER_APPROVAL_REQUESTED] = "DELETE FROM approvals WHERE id = ?1 "
                                       "AND state = ?2",
        [KEYTIER_APPROVAL_GRANTED] =
            "UPDATE approvals SET state = 0, approver = NULL, approver_key = "
            "NULL, signature = NULL, granted = NULL WHERE id = ?1 AND "
            "state = ?2",
        [KEYTIER_APPROVAL_USED] = "UPDATE approvals SET state = 1, used = "
                                  "NULL WHERE id = ?1 AND state = ?2",
    };
    struct kt_stmt s;
    if (state < KEYTIER_APPROVAL_REQUESTED || state > KEYTIER_APPROVAL_USED)
        return kt_err(KEYTIER_E_ARGS, "approval state %d", state);
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "undo approval step", undo[state]);
    kt_stmt_bind_text(&s, 1, id);
    kt_stmt_bind_int(&s, 2, state);
    keytier_err e = kt_stmt_exec(&s);
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}

keytier_err kt_store_approval_expiry_seen(struct kt_store *st, const char *id,
                                          bool *first)
{
    struct kt_stmt s;
    *first = false;
    pthread_mutex_lock(&st->mu);
    kt_stmt_prep(&s, st, "mark approval expired",
                 "UPDATE approvals SET expiry_seen = 1 WHERE id = ?1 AND "
                 "expiry_seen = 0");
    kt_stmt_bind_text(&s, 1, id);
    keytier_err e = kt_stmt_exec(&s);
    if (e == KEYTIER_OK)
        *first = kt_db_changes(st) == 1;
    kt_stmt_done(&s);
    pthread_mutex_unlock(&st->mu);
    return e;
}
