/* Test environment for libkeytier tests: real tokens (SoftHSM2, and
 * keytier's module when built) in a private temp dir, root keys created
 * through PKCS#11 with chosen attributes, and a library config file. */
#ifndef KT_TESTENV_H
#define KT_TESTENV_H

#include <stdbool.h>
#include <stddef.h>

#include "keytier.h"

struct testenv {
    char dir[256];
    char softhsm_conf[320];
    char conf[320];
    char store[320];
    char softhsm_module[256];
};

/* Creates the temp dir and SoftHSM2 tokens VaultA, VaultB, VaultC and
 * Service (user PIN 1234, SO PIN 5678 for all).  PINs come to the library
 * from a file (VaultA), an env var (VaultB) and config values (others). */
void testenv_setup(struct testenv *t);
void testenv_teardown(struct testenv *t);

enum { ROOT_EXTRACTABLE = 1, ROOT_NO_UNWRAP = 2, ROOT_NO_WRAP = 4 };
/* Creates an AES-256 root key `label` (CKA_ID = label bytes) in token. */
void testenv_root_aes(struct testenv *t, const char *token, const char *label,
                      int flags);
/* Creates an RSA-2048 key pair `label`. */
void testenv_root_rsa(struct testenv *t, const char *token, const char *label,
                      int flags);
/* Destroys every object labelled `label` in token. */
void testenv_destroy(struct testenv *t, const char *token, const char *label);

/* Writes the config file: SoftHSM2 module, PINs, service token, store; then
 * `extra` lines.  drop_module: do not list the SoftHSM2 module. */
void testenv_write_conf(struct testenv *t, const char *extra);
/* Opens a context on the written config (asserts success). */
keytier_ctx *testenv_ctx(struct testenv *t);

/* "pkcs11:token=T;object=L" */
const char *testenv_uri(const char *token, const char *label);

#endif
