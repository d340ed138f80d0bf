/*
 * The keyed anchor of the audit log (audit.h "Anchor"), on real tokens:
 * the service token is SoftHSM2 or keytier's own module (loop index 0/1).
 * A forger with full access to the log file cuts its tail or recomputes
 * every hash after an edit: verify names it through the anchor.  A forger
 * with the store but without the token key moves the anchor: its MAC fails.
 * An unreachable service token leaves records written and the anchor
 * behind: verify says how many records are unanchored, not "tampered".
 * Threads and processes appending together leave the anchor at the head.
 *
 * With the argument "outage" (run by tests/outage/outage.sh, which serves
 * token VaultA by a `p11-kit server`): VaultA is the service token and its
 * server is frozen (SIGSTOP) between appends, and a writer is killed while
 * its anchor call hangs (a crash between append and anchor).
 */
#include <check.h>
#include <ctype.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "audit.h"
#include "kt_lib.h"
#include "p11call.h"
#include "testenv.h"

#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
#define MAX_LINES  16

static struct testenv T;
static char logpath[400];
static char lines[MAX_LINES][4096];

/* Loop index 0: SoftHSM2 "Service"; 1: a token on keytier's module. */
static void env_up(int svc)
{
    testenv_setup(&T);
    if (svc == 1) {
        testenv_keytier_token(&T, "KtService");
        T.service = "KtService";
    }
    snprintf(logpath, sizeof logpath, "%s/audit.jsonl", T.dir);
    char extra[600];
    /* A deadline no loaded machine reaches: here the anchor lags only
     * when a test takes the service token away. */
    snprintf(extra, sizeof extra,
             "avail.audit_log = %s\navail.call_deadline_ms = 600000\n",
             logpath);
    testenv_write_conf(&T, extra);
}

static void env_down(void)
{
    testenv_teardown(&T);
}

static void assert_err(keytier_err got, keytier_err want, const char *needle)
{
    ck_assert_msg(got == want, "got %s (%s), want %s", keytier_error_name(got),
                  keytier_last_error_detail(), keytier_error_name(want));
    if (needle)
        ck_assert_msg(strstr(keytier_last_error_detail(), needle) != NULL,
                      "detail '%s' lacks '%s'", keytier_last_error_detail(),
                      needle);
}

/* Appends n records through a handle anchored by ctx (anchor: false for a
 * handle without the hook: a writer that died before anchoring). */
static void append(keytier_ctx *ctx, int n, bool anchor)
{
    kt_audit *a;
    assert_err(kt_audit_open(logpath, &a), KEYTIER_OK, NULL);
    if (anchor)
        kt_audit_anchor_attach(ctx, a);
    for (int i = 0; i < n; i++) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "OrganizationId",
                               json_object_new_string("org-1"));
        json_object_object_add(o, "N", json_object_new_int(i));
        assert_err(kt_audit_append(a, "test event", o, NULL), KEYTIER_OK, NULL);
    }
    kt_audit_close(a);
}

static int load(void)
{
    FILE *f = fopen(logpath, "r");
    int n = 0;
    ck_assert_ptr_nonnull(f);
    while (n < MAX_LINES && fgets(lines[n], sizeof lines[n], f))
        n++;
    fclose(f);
    return n;
}

static void save(int n)
{
    FILE *f = fopen(logpath, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < n; i++)
        fputs(lines[i], f);
    fclose(f);
}

static void field(int line, const char *key, char *out, size_t cap)
{
    json_object *o = json_tokener_parse(lines[line]), *v;
    ck_assert_ptr_nonnull(o);
    ck_assert(json_object_object_get_ex(o, key, &v));
    snprintf(out, cap, "%s", json_object_get_string(v));
    json_object_put(o);
}

/* The forger with full file access: recomputes PrevHash and Hash of every
 * line from `from` on, exactly as the writer would. */
static void rechain(int n, int from)
{
    char prev[65] = "0000000000000000000000000000000000000000000000000000000000"
                    "000000";
    if (from > 0)
        field(from - 1, "Hash", prev, sizeof prev);
    for (int i = from; i < n; i++) {
        json_object *o = json_tokener_parse(lines[i]);
        unsigned char md[32];
        unsigned int mdlen;
        size_t tlen;
        ck_assert_ptr_nonnull(o);
        json_object_object_del(o, "Hash");
        json_object_object_add(o, "PrevHash", json_object_new_string(prev));
        const char *text =
            json_object_to_json_string_length(o, JSON_FLAGS, &tlen);
        ck_assert(EVP_Digest(text, tlen, md, &mdlen, EVP_sha256(), NULL));
        for (int k = 0; k < 32; k++)
            sprintf(prev + 2 * k, "%02x", md[k]);
        json_object_object_add(o, "Hash", json_object_new_string(prev));
        snprintf(lines[i], sizeof lines[i], "%s\n",
                 json_object_to_json_string_ext(o, JSON_FLAGS));
        json_object_put(o);
    }
}

/* Replaces field key of line i with a string value (no rehash). */
static void set_field(int i, const char *key, const char *val)
{
    json_object *o = json_tokener_parse(lines[i]);
    ck_assert_ptr_nonnull(o);
    json_object_object_add(o, key, json_object_new_string(val));
    snprintf(lines[i], sizeof lines[i], "%s\n",
             json_object_to_json_string_ext(o, JSON_FLAGS));
    json_object_put(o);
}

static void store_sql(const char *stmt)
{
    testenv_sql(&T, stmt);
}

static keytier_err verify(keytier_ctx *ctx, keytier_audit_report *r)
{
    return keytier_audit_verify_anchored(ctx, logpath, r);
}

/* The one integer a query on the store returns. */
static long long store_int(const char *stmt)
{
    return testenv_sql_int(&T, stmt, NULL);
}

/* n records through an open handle. */
static void append_on(kt_audit *a, int n)
{
    for (int i = 0; i < n; i++) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "OrganizationId",
                               json_object_new_string("org-1"));
        assert_err(kt_audit_append(a, "test event", o, NULL), KEYTIER_OK, NULL);
    }
}

/* A row saved earlier written back over the anchor, as a forger with the
 * store would. */
static void store_restore(const struct kt_anchor_rec *rec)
{
    char q[512];
    snprintf(q, sizeof q,
             "UPDATE audit_anchors SET seq = %llu, hash = '%s', mac = ?2 "
             "WHERE log_id = ?1",
             (unsigned long long)rec->seq, rec->hash);
    testenv_sql_bind(&T, q, rec->log_id, rec->mac, sizeof rec->mac);
}

START_TEST(anchor_follows_head_key_stays_in_token)
{
    env_up(_i);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_audit_report r;
    /* An empty log has nothing to anchor, and nothing is verified. */
    append(ctx, 0, true);
    assert_err(verify(ctx, &r), KEYTIER_E_AUDIT_EMPTY, "holds no record");
    ck_assert_uint_eq(r.records, 0);
    append(ctx, 5, true);
    assert_err(verify(ctx, &r), KEYTIER_OK, NULL);
    ck_assert_uint_eq(r.records, 5);
    ck_assert_uint_eq(r.anchored_seq, 5);
    ck_assert_uint_eq(r.unanchored, 0);
    ck_assert_uint_eq(r.bad_line, 0);
    load();
    char id[64];
    field(0, "Id", id, sizeof id);
    ck_assert_str_eq(r.log_id, id);
    /* The anchor key: one, in the service token, never leaving it. */
    struct kt_token *tok;
    CK_SESSION_HANDLE s;
    CK_RV rv;
    char uri[64];
    snprintf(uri, sizeof uri, "pkcs11:token=%s", T.service);
    assert_err(kt_token_find(ctx, uri, &tok), KEYTIER_OK, NULL);
    assert_err(kt_session_get(tok, &s, &rv), KEYTIER_OK, NULL);
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_ATTRIBUTE find[] = {{CKA_CLASS, &cls, sizeof cls},
                           {CKA_KEY_TYPE, &kt, sizeof kt},
                           {CKA_LABEL, "keytier-audit-anchor", 20}};
    CK_OBJECT_HANDLE h[2];
    CK_ULONG count = 0;
    ck_assert_uint_eq(kt_p11_find_objects(tok, s, find, 3, h, 2, &count),
                      CKR_OK);
    ck_assert_uint_eq(count, 1);
    CK_BBOOL sens = CK_FALSE, extr = CK_TRUE, tokn = CK_FALSE;
    CK_ATTRIBUTE attrs[] = {{CKA_SENSITIVE, &sens, sizeof sens},
                            {CKA_EXTRACTABLE, &extr, sizeof extr},
                            {CKA_TOKEN, &tokn, sizeof tokn}};
    ck_assert_uint_eq(kt_p11_get_attributes(tok, s, h[0], attrs, 3), CKR_OK);
    ck_assert(sens && !extr && tokn);
    uint8_t value[64];
    CK_ATTRIBUTE val = {CKA_VALUE, value, sizeof value};
    ck_assert_uint_eq(kt_p11_get_attributes(tok, s, h[0], &val, 1),
                      CKR_ATTRIBUTE_SENSITIVE);
    kt_session_put(tok, s, CKR_OK);
    keytier_ctx_close(ctx);
    env_down();
}
END_TEST

/* Cutting the newest 1 or 3 records: named through the anchor. */
START_TEST(truncated_tail_named)
{
    env_up(_i);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_audit_report r;
    append(ctx, 6, true);
    int n = load();
    ck_assert_int_eq(n, 6);
    save(5);
    /* The chain alone sees nothing wrong... */
    uint64_t bad = 0, recs = 0;
    assert_err(keytier_audit_verify(logpath, &bad, &recs), KEYTIER_OK, NULL);
    ck_assert_uint_eq(recs, 5);
    /* ...the anchor does. */
    assert_err(verify(ctx, &r), KEYTIER_E_AUDIT_TAMPERED,
               "record 6 removed from the end: the log ends at line 5, its "
               "anchor is at record 6");
    ck_assert_uint_eq(r.bad_line, 6);
    ck_assert_uint_eq(r.records, 5);
    ck_assert_uint_eq(r.anchored_seq, 6);
    save(3);
    assert_err(verify(ctx, &r), KEYTIER_E_AUDIT_TAMPERED,
               "records 4..6 removed from the end: the log ends at line 3, "
               "its anchor is at record 6");
    ck_assert_uint_eq(r.bad_line, 4);
    ck_assert_uint_eq(r.records, 3);
    /* Appending after the cut does not move the anchor back over it. */
    append(ctx, 2, true);
    assert_err(verify(ctx, &r), KEYTIER_E_AUDIT_TAMPERED,
               "record 6 removed from the end: the log ends at line 5");
    ck_assert_uint_eq(r.bad_line, 6);
    append(ctx, 2, true);
    assert_err(verify(ctx, &r), KEYTIER_E_AUDIT_TAMPERED,
               "line 6 is not the anchored record 6: the chain was rewritten "
               "at or before it");
    ck_assert_uint_eq(r.bad_line, 6);
    /* Cut to nothing: the next append starts another log at this path. */
    save(0);
    assert_err(verify(ctx, &r), KEYTIER_E_AUDIT_TAMPERED,
               "is not the log anchored at this path");
    append(ctx, 2, true);
    assert_err(verify(ctx, &r), KEYTIER_E_AUDIT_TAMPERED,
               "is not the log anchored at this path");
    ck_assert_uint_eq(r.bad_line, 1);
    keytier_ctx_close(ctx);
    env_down();
}
END_TEST

/* A forger with full file access edits record 2 and recomputes every hash
 * after it: the chain is perfect, the anchored Hash is not. */
START_TEST(recomputed_chain_detected)
{
    env_up(_i);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_audit_report r;
    uint64_t bad = 0, recs = 0;
    append(ctx, 5, true);
    int n = load();
    set_field(1, "OrganizationId", "org-evil");
    rechain(n, 1);
    save(n);
    assert_err(keytier_audit_verify(logpath, &bad, &recs), KEYTIER_OK, NULL);
    ck_assert_uint_eq(recs, 5);
    assert_err(verify(ctx, &r), KEYTIER_E_AUDIT_TAMPERED,
               "line 5 is not the anchored record 5: the chain was rewritten "
               "at or before it");
    ck_assert_uint_eq(r.bad_line, 5);
    ck_assert_uint_eq(r.anchored_seq, 5);
    /* The same forger also dropping the last record. */
    save(n - 1);
    assert_err(verify(ctx, &r), KEYTIER_E_AUDIT_TAMPERED,
               "record 5 removed from the end");
    /* Rewritten from record 1 with a new Id: another log at the anchored
     * log's path. */
    n = load();
    set_field(0, "Id", "0badf00d-0000-4000-8000-000000000000");
    rechain(n, 0);
    save(n);
    assert_err(keytier_audit_verify(logpath, &bad, &recs), KEYTIER_OK, NULL);
    assert_err(verify(ctx, &r), KEYTIER_E_AUDIT_TAMPERED,
               "is not the log anchored at this path");
    ck_assert_uint_eq(r.bad_line, 1);
    ck_assert_str_eq(r.log_id, "0badf00d-0000-4000-8000-000000000000");
    keytier_ctx_close(ctx);
    env_down();
}
END_TEST

/* A forger with the store but not the token key: cuts two records and
 * moves the anchor back to the new last record. */
START_TEST(forged_anchor_row_detected)
{
    env_up(_i);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_audit_report r;
    char hash[65], stmt[300];
    append(ctx, 5, true);
    load();
    save(3);
    field(2, "Hash", hash, sizeof hash);
    snprintf(stmt, sizeof stmt, "UPDATE audit_anchors SET seq = 3, hash = '%s'",
             hash);
    store_sql(stmt);
    assert_err(verify(ctx, &r), KEYTIER_E_AUDIT_TAMPERED,
               "(record 3) fails its MAC: the anchor was altered");
    ck_assert_uint_eq(r.bad_line, 0);
    ck_assert_uint_eq(r.anchored_seq, 0);
    /* The service appending after the forgery does not launder it: the
     * writer checks the old anchor's MAC before moving it. */
    append(ctx, 2, true);
    assert_err(verify(ctx, &r), KEYTIER_E_AUDIT_TAMPERED,
               "(record 3) fails its MAC: the anchor was altered");
    /* The MAC alone changed, Seq and Hash right: refused as well. */
    keytier_ctx_close(ctx);
    env_down();
    env_up(_i);
    ctx = testenv_ctx(&T);
    append(ctx, 4, true);
    static const uint8_t zero[32];
    /* every row's MAC zeroed (no log has the empty id) */
    testenv_sql_bind(&T, "UPDATE audit_anchors SET mac = ?2 WHERE log_id <> ?1",
                     "", zero, sizeof zero);
    assert_err(verify(ctx, &r), KEYTIER_E_AUDIT_TAMPERED,
               "(record 4) fails its MAC");
    /* A deleted anchor row: the service token registered the log. */
    store_sql("DELETE FROM audit_anchors");
    assert_err(verify(ctx, &r), KEYTIER_E_AUDIT_TAMPERED,
               "was removed: the service token registered the log as "
               "anchored, the store has no anchor for it");
    ck_assert_uint_eq(r.anchored_seq, 0);
    keytier_ctx_close(ctx);
    env_down();
}
END_TEST

/* The service token cannot be found while records are written: they are
 * written, the anchor stays behind, verify counts the unanchored tail; the
 * next append with the token back anchors everything. */
START_TEST(service_token_down_tail_unanchored)
{
    env_up(_i);
    const char *svc = T.service;
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_audit_report r;
    append(ctx, 3, true);
    keytier_ctx_close(ctx);
    T.service = "Nowhere";
    char extra[600];
    snprintf(extra, sizeof extra,
             "avail.audit_log = %s\navail.call_deadline_ms = 600000\n",
             logpath);
    testenv_write_conf(&T, extra);
    ctx = testenv_ctx(&T);
    append(ctx, 2, true); /* every append succeeds */
    ck_assert_int_eq(load(), 5);
    assert_err(verify(ctx, &r), KEYTIER_E_TOKEN_NOT_FOUND,
               "service token pkcs11:token=Nowhere");
    keytier_ctx_close(ctx);
    T.service = svc;
    testenv_write_conf(&T, extra);
    ctx = testenv_ctx(&T);
    assert_err(verify(ctx, &r), KEYTIER_E_AUDIT_UNANCHORED,
               "records 4..5 are after the anchor (record 3)");
    ck_assert_uint_eq(r.records, 5);
    ck_assert_uint_eq(r.anchored_seq, 3);
    ck_assert_uint_eq(r.unanchored, 2);
    ck_assert_uint_eq(r.bad_line, 0);
    /* A writer that died between its append and its anchor: one more. */
    append(ctx, 1, false);
    assert_err(verify(ctx, &r), KEYTIER_E_AUDIT_UNANCHORED,
               "records 4..6 are after the anchor (record 3)");
    ck_assert_uint_eq(r.unanchored, 3);
    /* An edit inside the unanchored tail is still a chain break. */
    int n = load();
    set_field(4, "OrganizationId", "org-evil");
    save(n);
    assert_err(verify(ctx, &r), KEYTIER_E_AUDIT_TAMPERED, "line 5 was edited");
    ck_assert_uint_eq(r.bad_line, 5);
    load();
    set_field(4, "OrganizationId", "org-1");
    save(n);
    append(ctx, 1, true);
    assert_err(verify(ctx, &r), KEYTIER_OK, NULL);
    ck_assert_uint_eq(r.anchored_seq, 7);
    keytier_ctx_close(ctx);
    env_down();
}
END_TEST

/* Cut while the service token is away, then appended to: the writer back
 * with the token reads the anchored record back from the log, sees it is
 * another one, and keeps the anchor where it was. */
START_TEST(cut_while_token_away_not_laundered)
{
    env_up(_i);
    const char *svc = T.service;
    char extra[600];
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_audit_report r;
    append(ctx, 6, true);
    keytier_ctx_close(ctx);
    load();
    save(3);
    T.service = "Nowhere";
    snprintf(extra, sizeof extra,
             "avail.audit_log = %s\navail.call_deadline_ms = 600000\n",
             logpath);
    testenv_write_conf(&T, extra);
    ctx = testenv_ctx(&T);
    append(ctx, 4, true); /* records 4..7 again, none anchored */
    keytier_ctx_close(ctx);
    T.service = svc;
    testenv_write_conf(&T, extra);
    ctx = testenv_ctx(&T);
    append(ctx, 1, true);
    ck_assert_int_eq(load(), 8);
    assert_err(verify(ctx, &r), KEYTIER_E_AUDIT_TAMPERED,
               "line 6 is not the anchored record 6: the chain was rewritten "
               "at or before it");
    ck_assert_uint_eq(r.anchored_seq, 6);
    ck_assert_uint_eq(r.bad_line, 6);
    keytier_ctx_close(ctx);
    env_down();
}
END_TEST

/* The laundering of issue reports: with the log and the store but not the
 * token key, edit a record, recompute the chain, delete the anchor rows
 * and let the service append.  The append refuses to anchor the rewritten
 * log, and verify names the removed anchor. */
START_TEST(laundered_log_not_anchored)
{
    env_up(_i);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_audit_report r;
    char id[64], want[200];
    append(ctx, 5, true);
    int n = load();
    field(0, "Id", id, sizeof id);
    set_field(1, "OrganizationId", "org-evil");
    rechain(n, 1);
    save(n);
    store_sql("DELETE FROM audit_anchors");
    append(ctx, 1, true);
    ck_assert_int_eq(load(), 6);
    ck_assert_int_eq(store_int("SELECT count(*) FROM audit_anchors"), 0);
    snprintf(want, sizeof want,
             "the anchor of log %s was removed: the service token registered "
             "the log as anchored, the store has no anchor for it",
             id);
    assert_err(verify(ctx, &r), KEYTIER_E_AUDIT_TAMPERED, want);
    ck_assert_uint_eq(r.anchored_seq, 0);
    keytier_ctx_close(ctx);
    env_down();
}
END_TEST

/* Records no writer anchored (a writer without the anchor): a later
 * append does not adopt them, the log stays unanchored. */
START_TEST(unanchored_log_not_adopted)
{
    env_up(_i);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_audit_report r;
    append(ctx, 3, false);
    append(ctx, 1, true);
    ck_assert_int_eq(store_int("SELECT count(*) FROM audit_anchors"), 0);
    assert_err(verify(ctx, &r), KEYTIER_E_AUDIT_UNANCHORED,
               "no anchor for this log (4 records unanchored");
    ck_assert_uint_eq(r.unanchored, 4);
    keytier_ctx_close(ctx);
    env_down();
}
END_TEST

/* A log this handle began while the service token was away: its records
 * follow the chain the handle wrote, so the token back anchors them. */
START_TEST(own_log_anchored_when_token_returns)
{
    env_up(_i);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_audit_report r;
    kt_audit *a;
    static char nowhere[] = "pkcs11:token=Nowhere";
    char *svc = ctx->cfg.service_token;
    assert_err(kt_audit_open(logpath, &a), KEYTIER_OK, NULL);
    kt_audit_anchor_attach(ctx, a);
    ctx->cfg.service_token = nowhere;
    append_on(a, 3);
    ctx->cfg.service_token = svc;
    ck_assert_int_eq(store_int("SELECT count(*) FROM audit_anchors"), 0);
    append_on(a, 1);
    kt_audit_close(a);
    assert_err(verify(ctx, &r), KEYTIER_OK, NULL);
    ck_assert_uint_eq(r.anchored_seq, 4);
    keytier_ctx_close(ctx);
    env_down();
}
END_TEST

/* An unanchored tail with a line edited (not re-hashed): an append of
 * another writer reads the tail back and does not anchor over it. */
START_TEST(broken_tail_not_anchored)
{
    env_up(_i);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_audit_report r;
    append(ctx, 3, true);
    append(ctx, 2, false);
    int n = load();
    set_field(4, "OrganizationId", "org-evil");
    save(n);
    append(ctx, 1, true);
    ck_assert_int_eq(store_int("SELECT seq FROM audit_anchors"), 3);
    assert_err(verify(ctx, &r), KEYTIER_E_AUDIT_TAMPERED, "line 5 was edited");
    keytier_ctx_close(ctx);
    env_down();
}
END_TEST

/* An anchor row saved at record 3 and written back after the anchor moved
 * to 6, the records after 3 rewritten and re-hashed: the writer that
 * anchored record 6 refuses to move the anchor from the older row. */
START_TEST(restored_anchor_row_refused_by_writer)
{
    env_up(_i);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_audit_report r;
    struct kt_anchor_rec saved;
    char id[64];
    kt_audit *a;
    assert_err(kt_audit_open(logpath, &a), KEYTIER_OK, NULL);
    kt_audit_anchor_attach(ctx, a);
    append_on(a, 3);
    load();
    field(0, "Id", id, sizeof id);
    assert_err(kt_store_anchor_get(ctx->store, id, &saved), KEYTIER_OK, NULL);
    ck_assert_uint_eq(saved.seq, 3);
    append_on(a, 3);
    int n = load();
    set_field(4, "OrganizationId", "org-evil");
    rechain(n, 4);
    save(n);
    store_restore(&saved);
    append_on(a, 1);
    ck_assert_int_eq(store_int("SELECT seq FROM audit_anchors"), 3);
    kt_audit_close(a);
    assert_err(verify(ctx, &r), KEYTIER_E_AUDIT_UNANCHORED,
               "records 4..7 are after the anchor (record 3)");
    keytier_ctx_close(ctx);
    env_down();
}
END_TEST

/* The log deleted with its anchor rows, or emptied: the service token's
 * register names the log anchored at the path; an empty copy is empty. */
START_TEST(deleted_history_named)
{
    env_up(_i);
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_audit_report r;
    char id[64], want[200], copy[460];
    append(ctx, 4, true);
    load();
    field(0, "Id", id, sizeof id);
    snprintf(copy, sizeof copy, "%s/empty-copy.jsonl", T.dir);
    FILE *f = fopen(copy, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    assert_err(keytier_audit_verify_anchored(ctx, copy, &r),
               KEYTIER_E_AUDIT_EMPTY, "empty-copy.jsonl holds no record");
    uint64_t bad = 0, recs = 0;
    assert_err(keytier_audit_verify(copy, &bad, &recs), KEYTIER_E_AUDIT_EMPTY,
               "holds no record");
    store_sql("DELETE FROM audit_anchors");
    save(0);
    snprintf(want, sizeof want,
             "is empty, but the service token registered log %s at this "
             "path: the log was emptied or deleted",
             id);
    assert_err(verify(ctx, &r), KEYTIER_E_AUDIT_TAMPERED, want);
    ck_assert_uint_eq(r.bad_line, 1);
    ck_assert_int_eq(unlink(logpath), 0);
    append(ctx, 2, true);
    ck_assert_int_eq(store_int("SELECT count(*) FROM audit_anchors"), 1);
    snprintf(want, sizeof want,
             "is not the log anchored at this path (the service token "
             "registered log %s there)",
             id);
    assert_err(verify(ctx, &r), KEYTIER_E_AUDIT_TAMPERED, want);
    ck_assert_uint_eq(r.bad_line, 1);
    keytier_ctx_close(ctx);
    env_down();
}
END_TEST

#define THREADS    4
#define PER_THREAD 10
#define PROCS      2

struct writer {
    kt_audit *a;
};

static void *writer_main(void *p)
{
    struct writer *w = p;
    for (int i = 0; i < PER_THREAD; i++) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "Writer", json_object_new_int(getpid()));
        ck_assert_int_eq(kt_audit_append(w->a, "concurrent", o, NULL),
                         KEYTIER_OK);
    }
    return NULL;
}

/* One process: its own context (opened after fork) and handle, THREADS
 * threads appending through it. */
static void writer_process(void)
{
    keytier_ctx *ctx = testenv_ctx(&T);
    struct writer w;
    pthread_t th[THREADS];
    ck_assert_int_eq(kt_audit_open(logpath, &w.a), KEYTIER_OK);
    kt_audit_anchor_attach(ctx, w.a);
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, writer_main, &w), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    kt_audit_close(w.a);
    keytier_ctx_close(ctx);
}

START_TEST(threads_and_processes_anchor_the_head)
{
    env_up(_i);
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        ck_assert_int_ge(pids[p], 0);
        if (pids[p] == 0) {
            writer_process();
            _exit(0);
        }
    }
    writer_process();
    for (int p = 0; p < PROCS; p++) {
        int status;
        ck_assert_int_eq(waitpid(pids[p], &status, 0), pids[p]);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    const uint64_t total = (PROCS + 1) * THREADS * PER_THREAD;
    keytier_ctx *ctx = testenv_ctx(&T);
    keytier_audit_report r;
    assert_err(verify(ctx, &r), KEYTIER_OK, NULL);
    ck_assert_uint_eq(r.records, total);
    ck_assert_uint_eq(r.anchored_seq, total);
    /* one anchor row, one key: the first-use generation did not race */
    struct kt_anchor_rec anc;
    assert_err(kt_store_anchor_get(ctx->store, r.log_id, &anc), KEYTIER_OK,
               NULL);
    ck_assert_uint_eq(anc.seq, total);
    keytier_ctx_close(ctx);
    env_down();
}
END_TEST

/* ---- a frozen service token (argument "outage") ----------------------- */

/* Signals the server and each of its per-connection children, by PID. */
static void server_signal(pid_t pid, int sig)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    pid_t kids[64];
    int n = 0;

    while (d && (e = readdir(d)) && n < 64) {
        char path[300], buf[512];
        FILE *f;
        long ppid = -1;
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        f = fopen(path, "r");
        if (!f)
            continue;
        if (fgets(buf, sizeof buf, f)) {
            char *rp = strrchr(buf, ')'); /* comm may hold spaces */
            if (rp)
                sscanf(rp + 2, "%*c %ld", &ppid);
        }
        fclose(f);
        if (ppid == (long)pid)
            kids[n++] = (pid_t)atol(e->d_name);
    }
    if (d)
        closedir(d);
    kill(pid, sig);
    for (int i = 0; i < n; i++)
        kill(kids[i], sig);
}

static int lines_now(void)
{
    FILE *f = fopen(logpath, "r");
    int n = 0, c;
    ck_assert_ptr_nonnull(f);
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

/* Verifies until the service token has answered the calls still hung from
 * the freeze (the pool refuses a token with hung calls): bounded. */
static keytier_err verify_thawed(keytier_ctx *ctx, keytier_audit_report *r)
{
    keytier_err e = KEYTIER_E_TOKEN;
    for (int i = 0; i < 100 && e == KEYTIER_E_TOKEN; i++) {
        e = verify(ctx, r);
        if (e == KEYTIER_E_TOKEN)
            usleep(100 * 1000);
    }
    return e;
}

/* A log and store under sub/ of the outage dir, service token VaultA
 * behind its server; returns the server's PID. */
static pid_t outage_conf(const char *sub, unsigned deadline_ms, char conf[600])
{
    const char *top = getenv("KT_OUTAGE_DIR");
    const char *addr = getenv("KT_OUTAGE_ADDR_A");
    const char *pid_s = getenv("KT_OUTAGE_PID_A");
    ck_assert_msg(top && addr && pid_s, "run through tests/outage/outage.sh");
    snprintf(T.dir, sizeof T.dir, "%s/%s", top, sub);
    ck_assert_int_eq(mkdir(T.dir, 0700), 0);
    snprintf(logpath, sizeof logpath, "%s/audit.jsonl", T.dir);
    testenv_store_init(&T);
    snprintf(conf, 600, "%s/lib.conf", T.dir);
    FILE *f = fopen(conf, "w");
    if (f != NULL) /* it holds PINs: owner only */
        fchmod(fileno(f), 0600);
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "remote = %s\nservice_token = pkcs11:token=VaultA\n"
            "pin.VaultA = value:1234\nstore = %s\navail.audit_log = %s\n"
            "avail.call_deadline_ms = %u\navail.cache_ttl_ms = 0\n"
            "log_file = %s/lib.log\n",
            addr, T.store, logpath, deadline_ms, T.dir);
    fclose(f);
    return (pid_t)atol(pid_s);
}

START_TEST(frozen_service_token_record_written)
{
    char conf[600];
    pid_t pid = outage_conf("frozen", 1000, conf);
    keytier_ctx *ctx = NULL;
    assert_err(keytier_ctx_open(conf, &ctx), KEYTIER_OK, NULL);
    keytier_audit_report r;
    append(ctx, 2, true);
    assert_err(verify(ctx, &r), KEYTIER_OK, NULL);
    ck_assert_uint_eq(r.anchored_seq, 2);

    server_signal(pid, SIGSTOP);
    /* Each append returns with its record on disk while the token hangs
     * (the first one after the call deadline, later ones at once: the
     * pool refuses a token whose calls are hung). */
    append(ctx, 1, true);
    ck_assert_int_eq(lines_now(), 3);
    append(ctx, 2, true);
    ck_assert_int_eq(lines_now(), 5);
    server_signal(pid, SIGCONT);

    assert_err(verify_thawed(ctx, &r), KEYTIER_E_AUDIT_UNANCHORED,
               "records 3..5 are after the anchor (record 2)");
    ck_assert_uint_eq(r.records, 5);
    ck_assert_uint_eq(r.anchored_seq, 2);
    ck_assert_uint_eq(r.unanchored, 3);
    /* The token back: the next append anchors the whole log. */
    append(ctx, 1, true);
    assert_err(verify_thawed(ctx, &r), KEYTIER_OK, NULL);
    ck_assert_uint_eq(r.anchored_seq, 6);
    keytier_ctx_close(ctx);
    testenv_store_drop(&T);
}
END_TEST

/* A writer killed (SIGKILL) after its record is on disk and before its
 * anchor is stored (the service token frozen holds it there): the record
 * stands and is the one unanchored record; the next append anchors it. */
START_TEST(crash_between_append_and_anchor)
{
    char conf[600];
    pid_t server = outage_conf("crash", 600000, conf);
    int ready[2], go[2];
    ck_assert_int_eq(pipe(ready), 0);
    ck_assert_int_eq(pipe(go), 0);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        keytier_ctx *cctx = NULL;
        char c = 0;
        if (keytier_ctx_open(conf, &cctx) != KEYTIER_OK)
            _exit(2);
        append(cctx, 2, true);
        if (write(ready[1], "r", 1) != 1 || read(go[0], &c, 1) != 1)
            _exit(3);
        append(cctx, 1, true); /* the anchor call hangs: killed here */
        _exit(4);
    }
    char c = 0;
    ck_assert_int_eq(read(ready[0], &c, 1), 1);
    server_signal(server, SIGSTOP);
    ck_assert_int_eq(write(go[1], "g", 1), 1);
    /* Bounded wait for the record, then the crash. */
    for (int i = 0; i < 600 && lines_now() < 3; i++)
        usleep(50 * 1000);
    ck_assert_int_eq(lines_now(), 3);
    kill(child, SIGKILL);
    int status;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    server_signal(server, SIGCONT);

    keytier_ctx *ctx = NULL;
    keytier_audit_report r;
    assert_err(keytier_ctx_open(conf, &ctx), KEYTIER_OK, NULL);
    assert_err(verify_thawed(ctx, &r), KEYTIER_E_AUDIT_UNANCHORED,
               "record 3 is after the anchor (record 2)");
    ck_assert_uint_eq(r.records, 3);
    ck_assert_uint_eq(r.unanchored, 1);
    append(ctx, 1, true);
    assert_err(verify_thawed(ctx, &r), KEYTIER_OK, NULL);
    ck_assert_uint_eq(r.anchored_seq, 4);
    keytier_ctx_close(ctx);
    testenv_store_drop(&T);
}
END_TEST

int main(int argc, char **argv)
{
    Suite *s = suite_create("audit_anchor");
    TCase *tc = tcase_create("audit_anchor");
    SRunner *sr;
    int failed;

    tcase_set_timeout(tc, 240);
    if (argc > 1 && !strcmp(argv[1], "outage")) {
        tcase_add_test(tc, frozen_service_token_record_written);
        tcase_add_test(tc, crash_between_append_and_anchor);
    } else {
        tcase_add_loop_test(tc, anchor_follows_head_key_stays_in_token, 0, 2);
        tcase_add_loop_test(tc, truncated_tail_named, 0, 2);
        tcase_add_loop_test(tc, recomputed_chain_detected, 0, 2);
        tcase_add_loop_test(tc, forged_anchor_row_detected, 0, 2);
        tcase_add_loop_test(tc, service_token_down_tail_unanchored, 0, 2);
        tcase_add_loop_test(tc, cut_while_token_away_not_laundered, 0, 2);
        tcase_add_loop_test(tc, threads_and_processes_anchor_the_head, 0, 2);
        tcase_add_loop_test(tc, laundered_log_not_anchored, 0, 2);
        tcase_add_loop_test(tc, unanchored_log_not_adopted, 0, 2);
        tcase_add_loop_test(tc, own_log_anchored_when_token_returns, 0, 2);
        tcase_add_loop_test(tc, broken_tail_not_anchored, 0, 2);
        tcase_add_loop_test(tc, restored_anchor_row_refused_by_writer, 0, 2);
        tcase_add_loop_test(tc, deleted_history_named, 0, 2);
    }
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
