/*
 * Three nodes on one store (DESIGN.md §2 "Cache", "Audit across nodes"):
 * three long-running processes (kt_node.c, each its own context, cache,
 * sync and audit chain) share the store testenv names and the tokens of
 * keytier's module, so every node reaches every key.  What one node does
 * the others must see: a DEP made on one is read on the others, a
 * revocation one node's call finds refuses user reads on the others
 * within the documented bound (2 x avail.cache_sync_ms), two nodes racing
 * for a tenant's last DEP leave the limit, and a node that could not hear
 * for longer than the bound serves no cached key.  Their audit chains
 * verify as one truth, and the attacks on it are named.
 *
 * The store is testenv's: a SQLite file, or a PostgreSQL database with
 * KT_TEST_PG, where a node hears a revocation by LISTEN/NOTIFY within
 * NOTIFY_MS, not the sync bound.
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "avail.h"
#include "kt_lib.h"
#include "testenv.h"

#define NODES    3
#define SYNC_MS  200
#define BOUND_MS (2 * SYNC_MS)
/* PostgreSQL: nodes that sync only every LONG_SYNC_MS hear a revocation
 * through the store's notification within NOTIFY_MS (what a loaded
 * machine adds included); the periodic sync alone would take seconds. */
#define LONG_SYNC_MS 30000
#define NOTIFY_MS    1500
/* What a loaded machine may add to the bound (a read through the tokens,
 * scheduling): the test asserts the bound with this margin and prints
 * what it measured. */
#define MARGIN_MS 3000
#define REPLY_MAX 4096
#define TENANT    "acme"

struct node {
    pid_t pid;
    FILE *in, *out;
    char name[8];
    char conf[400];
    char log[400];
};

static struct testenv T;
static struct node N[NODES + 1]; /* N[1..3]; N[0] is the verifier's conf */
static char uri_a[256], uri_b[256];
static int sync_ms = SYNC_MS; /* the nodes' avail.cache_sync_ms */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Node i's configuration: testenv's (store, tokens, PINs) and its own
 * node name, audit chain and cache. */
static void node_conf(int i)
{
    char extra[1200];
    struct node *n = &N[i];
    snprintf(n->name, sizeof n->name, "n%d", i);
    snprintf(n->log, sizeof n->log, "%s/chains/n%d.audit.jsonl", T.dir, i);
    snprintf(n->conf, sizeof n->conf, "%s/n%d.conf", T.dir, i);
    snprintf(extra, sizeof extra,
             "node = %s\navail.audit_log = %s\navail.cache_ttl_ms = 60000\n"
             "avail.cache_sync_ms = %d\n",
             n->name, n->log, sync_ms);
    testenv_write_conf_mods(&T, MOD_KEYTIER, extra);
    ck_assert_int_eq(rename(T.conf, n->conf), 0);
}

static void node_start(int i)
{
    int to[2], from[2];
    char ready[REPLY_MAX];
    struct node *n = &N[i];
    const char *prog = getenv("KT_NODE");
    ck_assert_ptr_nonnull(prog);
    ck_assert_int_eq(pipe(to), 0);
    ck_assert_int_eq(pipe(from), 0);
    n->pid = fork();
    ck_assert_int_ge(n->pid, 0);
    if (n->pid == 0) {
        dup2(to[0], 0);
        dup2(from[1], 1);
        close(to[1]);
        close(from[0]);
        execl(prog, prog, n->conf, (char *)NULL);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    n->in = fdopen(to[1], "w");
    n->out = fdopen(from[0], "r");
    ck_assert_ptr_nonnull(fgets(ready, sizeof ready, n->out));
    ck_assert_msg(!strcmp(ready, "ready\n"), "%s: %s", n->name, ready);
}

/* One command line to node i. */
__attribute__((format(printf, 2, 0))) static void
node_vsend(int i, const char *fmt, va_list ap)
{
    vfprintf(N[i].in, fmt, ap);
    fputc('\n', N[i].in);
    fflush(N[i].in);
}

__attribute__((format(printf, 2, 3))) static void
node_send(int i, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    node_vsend(i, fmt, ap);
    va_end(ap);
}

/* The node's answer, without its newline. */
static const char *node_reply(int i, char *buf)
{
    ck_assert_msg(fgets(buf, REPLY_MAX, N[i].out) != NULL, "%s died",
                  N[i].name);
    buf[strcspn(buf, "\n")] = '\0';
    return buf;
}

__attribute__((format(printf, 3, 4))) static const char *
node_cmd(int i, char *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    node_vsend(i, fmt, ap);
    va_end(ap);
    return node_reply(i, buf);
}

static void assert_ok(int i, const char *reply)
{
    ck_assert_msg(!strncmp(reply, "ok", 2), "%s: %s", N[i].name, reply);
}

/* A DEP of the tenant made on node i: its id into dep. */
static void dep_create(int i, char dep[KEYTIER_ID_SIZE])
{
    char buf[REPLY_MAX];
    node_cmd(i, buf, "create %s %s %s", TENANT, uri_a, uri_b);
    assert_ok(i, buf);
    ck_assert_uint_eq(strlen(buf + 3), KEYTIER_ID_SIZE - 1);
    memcpy(dep, buf + 3, KEYTIER_ID_SIZE);
}

static void nodes_up(void)
{
    char dir[400];
    testenv_setup(&T);
    testenv_keytier_token(&T, "KA");
    testenv_keytier_token(&T, "KB");
    testenv_keytier_token(&T, "KS");
    T.service = "KS";
    testenv_root_aes(&T, "KA", "ra", 0);
    testenv_root_aes(&T, "KB", "rb", 0);
    snprintf(uri_a, sizeof uri_a, "%s", testenv_uri("KA", "ra"));
    snprintf(uri_b, sizeof uri_b, "%s", testenv_uri("KB", "rb"));
    snprintf(dir, sizeof dir, "%s/chains", T.dir);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    for (int i = 0; i <= NODES; i++)
        node_conf(i);
    for (int i = 1; i <= NODES; i++)
        node_start(i);
}

static void nodes_down(void)
{
    for (int i = 1; i <= NODES; i++) {
        int status = 0;
        kill(N[i].pid, SIGCONT);
        node_send(i, "quit");
        fclose(N[i].in);
        fclose(N[i].out);
        ck_assert_int_eq(waitpid(N[i].pid, &status, 0), N[i].pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "%s ended with status %d", N[i].name, status);
    }
    testenv_teardown(&T);
}

START_TEST(dep_made_on_one_node_read_on_the_others)
{
    char dep[KEYTIER_ID_SIZE], buf[REPLY_MAX];
    nodes_up();
    dep_create(1, dep);
    for (int i = 2; i <= NODES; i++) {
        ck_assert_str_eq(node_cmd(i, buf, "read %s %s", TENANT, dep),
                         "ok miss");
        ck_assert_str_eq(node_cmd(i, buf, "read %s %s", TENANT, dep), "ok hit");
    }
    nodes_down();
}
END_TEST

/* Customer keys A and B destroyed, and node `by` reads (its cache has no
 * copy): the read is refused and the revocation recorded in the store. */
static void revoke_on(int by, const char *dep)
{
    char buf[REPLY_MAX];
    assert_ok(by, node_cmd(by, buf, "destroy %s KA ra", T.keytier_module));
    assert_ok(by, node_cmd(by, buf, "destroy %s KB rb", T.keytier_module));
    node_cmd(by, buf, "read %s %s", TENANT, dep);
    ck_assert_msg(!strncmp(buf, "err KEYTIER_E_REVOKED ", 22), "%s", buf);
}

/* Polls node i with user reads until one is refused: the ms from since
 * to the start of that read (the node had stopped serving the key by
 * then; the refusal itself asks the tokens). */
static uint64_t until_refused(int i, const char *dep, uint64_t since)
{
    char buf[REPLY_MAX];
    for (;;) {
        uint64_t asked = now_ms();
        node_cmd(i, buf, "read %s %s", TENANT, dep);
        if (strncmp(buf, "ok", 2) != 0) {
            ck_assert_msg(!strncmp(buf, "err KEYTIER_E_REVOKED ", 22), "%s",
                          buf);
            return asked - since;
        }
        /* Still served: from its cache, never through the tokens. */
        ck_assert_str_eq(buf, "ok hit");
        ck_assert_msg(now_ms() - since < 20000, "%s still serves the key",
                      N[i].name);
        struct timespec pause = {0, 10 * 1000000};
        nanosleep(&pause, NULL);
    }
}

/* A DEP made on node 1 and cached on nodes 1 and 3, revoked on node 2:
 * the ms until nodes 1 and 3 refused it into d[1] and d[3]. */
static void revoke_and_time(uint64_t d[NODES + 1])
{
    char dep[KEYTIER_ID_SIZE], buf[REPLY_MAX];
    nodes_up();
    dep_create(1, dep);
    for (int i = 1; i <= NODES; i += 2) {
        assert_ok(i, node_cmd(i, buf, "read %s %s", TENANT, dep));
        ck_assert_str_eq(node_cmd(i, buf, "read %s %s", TENANT, dep), "ok hit");
    }
    revoke_on(2, dep);
    uint64_t seen = now_ms();
    d[1] = until_refused(1, dep, seen);
    d[3] = until_refused(3, dep, seen);
    fprintf(stderr,
            "%s: revocation on n2 refused on n1 after %llu ms, on n3 after "
            "%llu ms (cache_sync_ms %d)\n",
            testenv_is_pg(&T) ? "PostgreSQL" : "SQLite",
            (unsigned long long)d[1], (unsigned long long)d[3], sync_ms);
    nodes_down();
}

START_TEST(revocation_on_one_node_refused_on_the_others)
{
    uint64_t d[NODES + 1];
    revoke_and_time(d);
    ck_assert_uint_le(d[1], BOUND_MS + MARGIN_MS);
    ck_assert_uint_le(d[3], BOUND_MS + MARGIN_MS);
}
END_TEST

/* PostgreSQL: the revocation reaches the other nodes by NOTIFY, long
 * before their next periodic sync. */
START_TEST(revocation_notified_to_the_other_nodes)
{
    uint64_t d[NODES + 1];
    if (getenv("KT_TEST_PG") == NULL || !*getenv("KT_TEST_PG"))
        return; /* SQLite: one machine, no notifications */
    sync_ms = LONG_SYNC_MS;
    revoke_and_time(d);
    ck_assert_uint_le(d[1], NOTIFY_MS);
    ck_assert_uint_le(d[3], NOTIFY_MS);
}
END_TEST

/* Nodes 2 and 3 each make a DEP at once; *made gets how many were made,
 * the other answers must be the limit. */
static int race_for_dep(void)
{
    char a[REPLY_MAX], b[REPLY_MAX];
    int made = 0;
    node_send(2, "create %s %s %s", TENANT, uri_a, uri_b);
    node_send(3, "create %s %s %s", TENANT, uri_a, uri_b);
    node_reply(2, a);
    node_reply(3, b);
    for (const char *r = a; r != NULL; r = r == a ? b : NULL) {
        if (!strncmp(r, "ok ", 3))
            made++;
        else
            ck_assert_msg(!strncmp(r, "err KEYTIER_E_DEP_LIMIT ", 24), "%s", r);
    }
    return made;
}

START_TEST(two_nodes_racing_for_the_last_dep_leave_fifty)
{
    char dep[KEYTIER_ID_SIZE], buf[REPLY_MAX];
    nodes_up();
    for (int k = 0; k < 49; k++)
        dep_create(1, dep);
    ck_assert_int_eq(race_for_dep(), 1);
    ck_assert_str_eq(node_cmd(1, buf, "count %s Exchange", TENANT), "ok 50");
    ck_assert_int_eq(race_for_dep(), 0);
    ck_assert_str_eq(node_cmd(1, buf, "count %s Exchange", TENANT), "ok 50");
    nodes_down();
}
END_TEST

/* Runs sql on the store (the sqlite3 or psql client): the test's hand
 * on the store the nodes share. */
static void store_sql(const char *sql)
{
    char cmd[1200];
    if (testenv_is_pg(&T))
        snprintf(cmd, sizeof cmd,
                 "PGOPTIONS='-c lock_timeout=20s' psql -qAt '%s' -v "
                 "ON_ERROR_STOP=1 -c '%s' >/dev/null",
                 T.store, sql);
    else
        snprintf(cmd, sizeof cmd, "sqlite3 -cmd '.timeout 20000' '%s' '%s'",
                 T.store, sql);
    ck_assert_msg(system(cmd) == 0, "%s", cmd);
}

static void pause_ms(long ms)
{
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

/* Node 1 holds the key in its cache (TTL 60 s) and cannot hear: stopped
 * (SIGSTOP) while node 2 finds the revocation, then resumed with the
 * store unable to give it any invalidation (their table renamed away:
 * its sync thread and LISTEN wake-up fail) for longer than the bound.
 * Its read must not be served from the cache: it goes to the tokens,
 * which refuse.  Nothing the node's sync thread does can make this pass:
 * without the check of the last sync's age before a hit it answers
 * "ok hit". */
START_TEST(node_that_could_not_hear_serves_no_cached_key)
{
    char dep[KEYTIER_ID_SIZE], buf[REPLY_MAX];
    nodes_up();
    dep_create(1, dep);
    assert_ok(1, node_cmd(1, buf, "read %s %s", TENANT, dep));
    ck_assert_str_eq(node_cmd(1, buf, "read %s %s", TENANT, dep), "ok hit");
    ck_assert_int_eq(kill(N[1].pid, SIGSTOP), 0);
    revoke_on(2, dep);
    store_sql("ALTER TABLE cache_invalidations RENAME TO kt_deaf");
    ck_assert_int_eq(kill(N[1].pid, SIGCONT), 0);
    pause_ms(3 * BOUND_MS); /* > the bound, < the TTL; its syncs fail */
    node_cmd(1, buf, "read %s %s", TENANT, dep);
    ck_assert_msg(!strncmp(buf, "err KEYTIER_E_REVOKED ", 22), "%s", buf);
    store_sql("ALTER TABLE kt_deaf RENAME TO cache_invalidations");
    nodes_down();
}
END_TEST

/* ---- the audit chains ------------------------------------------------- */

/* keytier_audit_verify_chains on the verifier's context. */
static keytier_err verify(keytier_ctx *ctx, keytier_audit_chains_report *r)
{
    keytier_err e = keytier_audit_verify_chains(ctx, NULL, NULL, 0, r);
    fprintf(stderr, "verify: %s %s\n", keytier_error_name(e),
            keytier_last_error_detail());
    return e;
}

/* The whole of a (small) file, NUL-terminated; *len its size. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    char *buf = calloc(1, 1 << 20);
    ck_assert_ptr_nonnull(buf);
    *len = fread(buf, 1, (1 << 20) - 1, f);
    ck_assert(feof(f));
    fclose(f);
    return buf;
}

/* In C, not by a shell: the sanitizer build's leak checks stop at our
 * programs. */
static void write_file(const char *path, const char *mode, const char *data,
                       size_t len)
{
    FILE *f = fopen(path, mode);
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

static void copy_file(const char *from, const char *to)
{
    size_t len;
    char *buf = slurp(from, &len);
    write_file(to, "wb", buf, len);
    free(buf);
}

/* The last line of from appended to to. */
static void append_last_line(const char *from, const char *to)
{
    size_t len;
    char *buf = slurp(from, &len);
    ck_assert(len > 1 && buf[len - 1] == '\n');
    size_t start = len - 1;
    while (start > 0 && buf[start - 1] != '\n')
        start--;
    write_file(to, "ab", buf + start, len - start);
    free(buf);
}

static void assert_tampered(keytier_ctx *ctx, const char *want)
{
    keytier_audit_chains_report r;
    ck_assert_int_eq(verify(ctx, &r), KEYTIER_E_AUDIT_TAMPERED);
    ck_assert_msg(strstr(keytier_last_error_detail(), want) != NULL,
                  "detail '%s' lacks '%s'", keytier_last_error_detail(), want);
    keytier_audit_chains_report_free(&r);
}

static uint64_t forged_index;
static bool forged_take;

/* A writer that takes its index from the store like every node (or not
 * at all), then writes forged_index instead. */
static keytier_err forge_index(void *arg, const char *log_id, const char *node,
                               const char *path, uint64_t *index)
{
    keytier_ctx *ctx = arg;
    keytier_err e = forged_take ? kt_store_audit_index_take(ctx->store, log_id,
                                                            node, path, index)
                                : KEYTIER_OK;
    *index = forged_index;
    return e;
}

/* Node's chain gets one record with forged_index, anchored as any. */
static void forge_record(keytier_ctx *ctx, int i)
{
    kt_audit *a = NULL;
    ck_assert_int_eq(kt_audit_open(N[i].log, &a), KEYTIER_OK);
    kt_audit_anchor_attach(ctx, a);
    kt_audit_set_node(a, N[i].name, forge_index, ctx);
    ck_assert_int_eq(kt_audit_append(a, "Forged", NULL, NULL), KEYTIER_OK);
    kt_audit_close(a);
}

/* Every node wrote records: the chains verify as one truth. */
static void chains_intact(keytier_ctx *ctx, keytier_audit_chains_report *r)
{
    ck_assert_int_eq(verify(ctx, r), KEYTIER_OK);
    ck_assert_uint_eq(r->n_chains, NODES);
    for (size_t i = 0; i < r->n_chains; i++) {
        ck_assert_str_eq(r->chains[i].node, N[i + 1].name);
        ck_assert_str_eq(r->chains[i].path, N[i + 1].log);
    }
    ck_assert_uint_eq(r->indexed, r->records);
    ck_assert_uint_eq(r->highest_index, r->records);
    ck_assert_uint_eq(r->gaps, 0);
}

START_TEST(audit_chains_one_truth_and_attacks)
{
    char dep[KEYTIER_ID_SIZE], save[NODES + 1][500], old[500];
    keytier_audit_chains_report r;
    nodes_up();
    for (int i = 1; i <= NODES; i++)
        dep_create(i, dep);
    keytier_ctx *ctx = NULL;
    ck_assert_int_eq(keytier_ctx_open(N[0].conf, &ctx), KEYTIER_OK);
    chains_intact(ctx, &r);
    keytier_audit_chains_report_free(&r);
    /* An append that took an index and died before its first record: a
     * gap, not a chain, and no tampering. */
    uint64_t ghost = 0;
    char ghost_log[600];
    snprintf(ghost_log, sizeof ghost_log, "%s/chains/n4.audit.jsonl", T.dir);
    ck_assert_int_eq(kt_store_audit_index_take(
                         ctx->store, "00000000-0000-4000-8000-000000000004",
                         "n4", ghost_log, &ghost),
                     KEYTIER_OK);
    ck_assert_int_eq(verify(ctx, &r), KEYTIER_OK);
    ck_assert_uint_eq(r.n_chains, NODES);
    ck_assert_uint_eq(r.highest_index, ghost);
    ck_assert_uint_eq(r.gaps, 1);
    keytier_audit_chains_report_free(&r);
    for (int i = 1; i <= NODES; i++) {
        snprintf(save[i], sizeof save[i], "%s.save", N[i].log);
        copy_file(N[i].log, save[i]);
    }

    /* A record of n1's chain copied into n2's. */
    append_last_line(N[1].log, N[2].log);
    assert_tampered(ctx, "node n2");
    copy_file(save[2], N[2].log);

    /* A chain deleted. */
    ck_assert_int_eq(unlink(N[3].log), 0);
    assert_tampered(ctx, "node n3's chain");
    copy_file(save[3], N[3].log);

    /* A chain rolled back to an older copy: the anchor names it. */
    snprintf(old, sizeof old, "%s.old", N[2].log);
    copy_file(N[2].log, old);
    dep_create(2, dep);
    copy_file(N[2].log, save[2]);
    copy_file(old, N[2].log);
    assert_tampered(ctx, "removed from the end");
    copy_file(save[2], N[2].log);
    ck_assert_int_eq(verify(ctx, &r), KEYTIER_OK);

    /* Two records with one global index: n3 writes n1's newest one. */
    dep_create(1, dep);
    forged_index = 0;
    keytier_audit_chains_report_free(&r);
    ck_assert_int_eq(verify(ctx, &r), KEYTIER_OK);
    forged_index = r.chains[0].last_index;
    keytier_audit_chains_report_free(&r);
    forged_take = true;
    forge_record(ctx, 3);
    char want[64];
    snprintf(want, sizeof want, "global index %llu is in the chains of",
             (unsigned long long)forged_index);
    assert_tampered(ctx, want);

    /* An index the store never gave n2's chain. */
    forged_index += 1000;
    forged_take = false;
    forge_record(ctx, 2);
    ck_assert_int_eq(verify(ctx, &r), KEYTIER_E_AUDIT_TAMPERED);
    ck_assert_str_eq(r.chains[1].node, "n2");
    ck_assert_int_eq(r.chains[1].result, KEYTIER_E_AUDIT_TAMPERED);
    ck_assert_msg(strstr(r.chains[1].reason,
                         "above the last one the store gave node n2's") != NULL,
                  "%s", r.chains[1].reason);
    keytier_audit_chains_report_free(&r);
    keytier_ctx_close(ctx);
    nodes_down();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nodes");
    TCase *tc = tcase_create("nodes");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, dep_made_on_one_node_read_on_the_others);
    tcase_add_test(tc, revocation_on_one_node_refused_on_the_others);
    tcase_add_test(tc, revocation_notified_to_the_other_nodes);
    tcase_add_test(tc, two_nodes_racing_for_the_last_dep_leave_fifty);
    tcase_add_test(tc, node_that_could_not_hear_serves_no_cached_key);
    tcase_add_test(tc, audit_chains_one_truth_and_attacks);
    suite_add_tcase(s, tc);
    return testenv_run(s);
}
