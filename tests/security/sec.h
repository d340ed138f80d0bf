/* The security suite: each test is an attack on the module, written so that
 * it succeeds if the defence it targets is broken.
 *
 * The same binaries run against keytier (KT_MODULE = keytier-pkcs11.so),
 * where an attack that succeeds fails the test, and against SoftHSM2
 * (KT_MODULE = libsofthsm2.so), where the outcome is only reported: a line
 * "softhsm2: <test>: refused | ATTACK SUCCEEDED | not applicable (why)" on
 * stdout, and the test passes. */
#ifndef KT_SEC_H
#define KT_SEC_H

#include <stdbool.h>

#include "harness.h"

/* The outcome of one attack: refused is true when the defence held. */
void sec_outcome(const char *test, bool refused, const char *attack);
#define SEC_REFUSED(refused, attack) sec_outcome(__func__, (refused), (attack))

/* The attack does not apply to SoftHSM2 (it lacks the mechanism, the
 * feature or the file layout): reports why; the caller returns. */
void sec_not_applicable(const char *test, const char *why);
#define SEC_NA(why) sec_not_applicable(__func__, (why))

#endif
