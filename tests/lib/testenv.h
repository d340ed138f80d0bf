/* Test environment for libkeytier tests: real tokens (SoftHSM2, and
 * keytier's module when built) in a private temp dir, root keys created
 * through PKCS#11 with chosen attributes, and a library config file. */
#ifndef KT_TESTENV_H
#define KT_TESTENV_H

#include <stdbool.h>
#include <stddef.h>

#include <check.h>

#include "keytier.h"

struct testenv {
    char dir[256];
    char softhsm_conf[320];
    char conf[320];
    char store[320]; /* a SQLite file, or a conninfo with KT_TEST_PG */
    char pg_db[40];  /* the database made for this test ("": SQLite) */
    bool pg_copy;    /* pg_db_copy made too (testenv_store_copy) */
    char softhsm_module[256];
    char keytier_module[256]; /* $KT_MODULE */
    char keytier_conf[320];
    char kt_labels[8][33]; /* tokens created on keytier's module */
    int n_kt;
    const char *service; /* service token label (default "Service") */
};

enum { MOD_SOFTHSM = 1, MOD_KEYTIER = 2 };

/* Creates the temp dir and SoftHSM2 tokens VaultA, VaultB, VaultC and
 * Service (user PIN 1234, SO PIN 5678 for all).  PINs come to the library
 * from a file (VaultA), an env var (VaultB) and config values (others). */
void testenv_setup(struct testenv *t);
void testenv_teardown(struct testenv *t);
/* The test's store, in t->store, for a t->dir set (testenv_setup calls
 * it): t->dir/store/keytier.db, or with KT_TEST_PG (a conninfo,
 * tests/pg.sh) a fresh database kt_<random> on that server, dropped by
 * testenv_store_drop (testenv_teardown calls it). */
void testenv_store_init(struct testenv *t);
void testenv_store_drop(struct testenv *t);
/* Whether the store is a PostgreSQL database (KT_TEST_PG set). */
bool testenv_is_pg(const struct testenv *t);

/* SQL on the test's store, whichever engine it is (a SQLite file, or the
 * PostgreSQL database of KT_TEST_PG), through the library's own statement
 * layer (lib/store/store_stmt.h): portable SQL with ?N parameters, on a
 * connection of its own, as an operator or an attacker with the store
 * would.  Each asserts success. */
/* Runs sql, one or more statements without parameters. */
void testenv_sql(const struct testenv *t, const char *sql);
/* Runs sql with ?1 bound to arg (NULL: SQL NULL) and, when blob is not
 * NULL, ?2 to the n bytes of blob. */
void testenv_sql_bind(const struct testenv *t, const char *sql, const char *arg,
                      const void *blob, size_t n);
/* The first column of sql's first row (?1 bound to arg when not NULL) as an
 * integer, -1 when there is no row. */
long long testenv_sql_int(const struct testenv *t, const char *sql,
                          const char *arg);
/* The same as text: malloc'd, "" when there is no row or it is NULL. */
char *testenv_sql_text(const struct testenv *t, const char *sql,
                       const char *arg);
/* Every row of sql (?1 bound to arg when not NULL), its first ncols
 * columns each as its bytes (a number's or a text's as text, a blob's
 * raw: the same on both engines) when all are printable, else 'x' and
 * their hex; columns separated by ' ', rows ended by '|': malloc'd, ""
 * when there is no row.  For comparing rows before and after. */
char *testenv_sql_rows(const struct testenv *t, const char *sql,
                       const char *arg, int ncols);
/* The same as a blob copied into buf (at most cap bytes, asserted); its
 * length.  The row must exist. */
size_t testenv_sql_blob(const struct testenv *t, const char *sql,
                        const char *arg, void *buf, size_t cap);
/* Makes every `event` ("BEFORE UPDATE OF state", "BEFORE DELETE") on table
 * fail with the message msg while cond (SQL on NEW/OLD, NULL: always) holds:
 * a trigger on SQLite, a PL/pgSQL trigger function on PostgreSQL.
 * testenv_sql_allow removes it. */
void testenv_sql_refuse(const struct testenv *t, const char *name,
                        const char *event, const char *table, const char *cond,
                        const char *msg);
void testenv_sql_allow(const struct testenv *t, const char *name,
                       const char *table);
/* Copies the store as it is now (no context may have it open) into a new
 * store, whose location goes to out: a file beside the test's on SQLite, a
 * database made from it on PostgreSQL (dropped by testenv_teardown). */
void testenv_store_copy(struct testenv *t, char *out, size_t cap);

enum {
    ROOT_EXTRACTABLE = 1,
    ROOT_NO_UNWRAP = 2,
    ROOT_NO_WRAP = 4,
    ROOT_SMALL = 8,          /* AES-128 / RSA-1024 */
    ROOT_NOT_SENSITIVE = 16, /* its value readable (AES only) */
};
/* Creates an AES-256 root key `label` (CKA_ID = label bytes) in token. */
void testenv_root_aes(struct testenv *t, const char *token, const char *label,
                      int flags);
/* Creates an RSA-2048 key pair `label`. */
void testenv_root_rsa(struct testenv *t, const char *token, const char *label,
                      int flags);
/* Destroys every object labelled `label` in token. */
void testenv_destroy(struct testenv *t, const char *token, const char *label);
/* How many objects labelled `label` token holds (private ones included). */
int testenv_count(struct testenv *t, const char *token, const char *label);

/* Creates an initialised token `label` (user PIN 1234) on keytier's own
 * module; roots made with testenv_root_* in it then live there. */
void testenv_keytier_token(struct testenv *t, const char *label);

/* Writes the config file: both modules (if keytier tokens exist), PINs,
 * service token, store; then `extra` lines. */
void testenv_write_conf(struct testenv *t, const char *extra);
/* The same, listing only the modules in `mods` (MOD_*): a token whose
 * module is not listed is "removed from the configuration". */
void testenv_write_conf_mods(struct testenv *t, int mods, const char *extra);
/* Opens a context on the written config (asserts success). */
keytier_ctx *testenv_ctx(struct testenv *t);

/* "pkcs11:token=T;object=L" */
const char *testenv_uri(const char *token, const char *label);

/* Runs every test of s (forked, libcheck's default); the process's exit
 * status: 0 when all passed. */
int testenv_run(Suite *s);
/* Threads of this process now (entries of /proc/self/task). */
int testenv_thread_count(void);

#endif
