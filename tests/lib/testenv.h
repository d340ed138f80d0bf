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
/* Whether the store is a PostgreSQL database (KT_TEST_PG set). */
bool testenv_is_pg(const struct testenv *t);

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
