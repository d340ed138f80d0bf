/* The fault scenarios' driver (tests/fault/fault.c): for one operation on
 * the module and each kind of fault, count the calls P of that kind the
 * operation makes, then fail each of them in turn (n = 1..P) from the same
 * old state, reopen the token unarmed and require exactly the old or
 * exactly the new state, with nothing leaked. */
#ifndef KT_TEST_FAULT_H
#define KT_TEST_FAULT_H

#include <stdbool.h>
#include <stddef.h>

#include "harness.h"
#include "kt_fault.h"

#define FS_LABEL           "fault"
#define FS_NEW_USER_PIN    "user-renewed"
#define FS_NEW_SO_PIN      "so-renewed"
#define FS_MAX_OBJECTS     16
#define FS_GENERATED_LABEL "generated" /* see object_digest */
/* Allocation points run per scenario and kind when no stride is given. */
#define FS_ALLOC_POINTS 24
#define FS_PUBLIC       ((CK_USER_TYPE)~0UL) /* fs_session: no login */

/* What a scenario works on; prep fills it again before every point (the
 * handles of a reopened module are new). */
struct fs_ctx {
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE session;
    CK_OBJECT_HANDLE obj[4];
};

struct fs_scenario {
    const char *name;
    /* Once, on a fresh token directory with the module initialised: makes
     * the old state. */
    void (*setup)(struct fs_ctx *ctx);
    /* Before every run, unarmed: sessions, logins, handles. */
    void (*prep)(struct fs_ctx *ctx);
    /* The operation under test, armed. */
    CK_RV (*op)(struct fs_ctx *ctx);
    /* For an operation that checks a PIN: the role's CKF_*_PIN_COUNT_LOW.
     * The module charges a try to the retry counter, durably, before it
     * checks the PIN and gives it back after (module/README.md); a failure
     * between the two leaves one try charged, which the next good login
     * gives back. Such a state is counted apart, not as a mixture. */
    CK_FLAGS charges;
    /* An operation whose allocation failures must be precise: answered
     * CKR_OK, CKR_HOST_MEMORY, CKR_DEVICE_MEMORY or (the store's answer to
     * SQLite running out) CKR_DEVICE_ERROR, never logged as damage ("damaged",
     * "refused"), and a CKR_HOST_MEMORY answer costs no try: the state is
     * exactly the old or the new one. */
    bool precise;
};

/* What a reopened module shows of the token: listed or not, label, flags,
 * which PIN opens each role (or the refusal), and a digest of every object
 * the best login sees with all its readable attributes. */
struct fs_state {
    bool present;
    CK_UTF8CHAR label[32];
    CK_FLAGS flags;
    int so_pin;    /* 1: SO_PIN, 2: FS_NEW_SO_PIN, 0: neither */
    int user_pin;  /* 1: USER_PIN, 2: FS_NEW_USER_PIN, 0: neither */
    CK_RV refusal; /* a login answer other than OK / PIN_INCORRECT / ... */
    size_t nobj;
    unsigned long long obj[FS_MAX_OBJECTS];
};

/* Runs every kind of one scenario and prints its line per kind; fails the
 * test on a mixed state, a leak, an unfired point or a crash. Every
 * SQLite call, write and fsync is failed in turn; of the allocations
 * (hundreds to thousands per operation) every stride-th, or with stride 0
 * about FS_ALLOC_POINTS spread evenly over all of them. */
void fs_run(const struct fs_scenario *sc, unsigned long stride);

/* Whether the module's log holds a line naming damage or a refusal. */
bool fs_log_names_damage(void);

/* Slot of the token labelled FS_LABEL. */
CK_SLOT_ID fs_token_slot(void);
/* A RW session on the scenario's token, logged in as user (CKU_USER) or
 * SO (CKU_SO) with the first PIN, or public (FS_PUBLIC). */
CK_SESSION_HANDLE fs_session(CK_USER_TYPE who);
/* Handle of the one object labelled label, or CK_INVALID_HANDLE. */
CK_OBJECT_HANDLE fs_find(CK_SESSION_HANDLE s, const char *label);

#endif
