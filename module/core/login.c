/* Login state, PINs and the retry counter (PKCS#11 v2.40 §5.6). The
 * counters live in the store so they survive restarts and are shared with
 * other processes. */
#include "kt.h"

#include <string.h>

#include "ossl/ossl.h"
#include "store/store.h"

CK_RV kt_login_check_pin_len(CK_ULONG len)
{
    if (len < kt_g.cfg.pin_min_length || len > kt_g.cfg.pin_max_length)
        return CKR_PIN_LEN_RANGE;
    return CKR_OK;
}

/* Charges one try (inside the PIN write transaction): CKR_PIN_LOCKED at
 * the limit (nothing written), CKR_USER_PIN_NOT_INITIALIZED without a
 * record. The record charged is the one whose PIN is then checked. */
struct charge {
    int which;
    CK_ULONG max;
    CK_ULONG failures;
    struct kt_pin rec;
};

static KT_NODISCARD CK_RV charge_fn(void *ctx, struct kt_pin pins[2])
{
    struct charge *c = ctx;
    struct kt_pin *p = &pins[c->which];
    if (!p->present)
        return CKR_USER_PIN_NOT_INITIALIZED;
    c->failures = p->failures;
    if (p->failures >= c->max)
        return CKR_PIN_LOCKED;
    p->failures++;
    c->failures = p->failures;
    c->rec = *p;
    return CKR_OK;
}

/* The counter of the record with this salt back to zero (a right PIN),
 * or one try given back (a PIN that was never judged). A record replaced
 * meanwhile (a PIN change) is left alone. */
struct counter_fix {
    int which;
    bool reset;
    unsigned char salt[16];
};

static KT_NODISCARD CK_RV counter_fn(void *ctx, struct kt_pin pins[2])
{
    const struct counter_fix *f = ctx;
    struct kt_pin *p = &pins[f->which];
    if (!p->present || p->failures == 0 ||
        memcmp(p->salt, f->salt, sizeof(p->salt)) != 0)
        return KT_CKR_NO_CHANGE;
    p->failures = f->reset ? 0 : p->failures - 1;
    return CKR_OK;
}

static const char *role_name(int which)
{
    return which == KT_PIN_SO ? "SO" : "user";
}

/* A reset that failed after a right PIN, retried before the next try is
 * charged, at logout and when the token is closed (C_Finalize): the
 * counter never locks out a user who typed the right PIN because a write
 * failed, and is only reset by a durable write. */
static void retry_reset(struct kt_token *t, int which)
{
    struct counter_fix f = {.which = which, .reset = true};
    pthread_rwlock_rdlock(&t->lock);
    bool due = t->reset_due[which];
    memcpy(f.salt, t->reset_salt[which], sizeof(f.salt));
    pthread_rwlock_unlock(&t->lock);
    if (!due || kt_token_pins_write(t, counter_fn, &f, NULL) != CKR_OK)
        return;
    pthread_rwlock_wrlock(&t->lock);
    if (memcmp(f.salt, t->reset_salt[which], sizeof(f.salt)) == 0)
        t->reset_due[which] = false;
    pthread_rwlock_unlock(&t->lock);
    kt_log(KT_LOG_INFO, "token %s: %s PIN retry counter reset (retried)",
           t->path, role_name(which));
}

void kt_login_retry_resets(struct kt_token *t)
{
    retry_reset(t, KT_PIN_SO);
    retry_reset(t, KT_PIN_USER);
}

/* After the PIN was checked: a right PIN resets the counter (a failed
 * write leaves the reset due, the login still succeeds); a PIN that was
 * never judged (memory ran out) gets its try back; a wrong PIN or a
 * damaged record keeps it. */
static void settle(struct kt_token *t, int which, const struct charge *c,
                   CK_RV rv)
{
    struct counter_fix f = {.which = which, .reset = rv == CKR_OK};
    memcpy(f.salt, c->rec.salt, sizeof(f.salt));
    if (rv == CKR_OK || (rv != CKR_PIN_INCORRECT && rv != CKR_DEVICE_ERROR)) {
        if (kt_token_pins_write(t, counter_fn, &f, NULL) == CKR_OK)
            return;
        if (rv == CKR_OK) {
            pthread_rwlock_wrlock(&t->lock);
            t->reset_due[which] = true;
            memcpy(t->reset_salt[which], f.salt, sizeof(f.salt));
            pthread_rwlock_unlock(&t->lock);
        }
        kt_log(KT_LOG_ERROR,
               "token %s: cannot %s the %s PIN retry counter (the try stays "
               "charged in the store)%s",
               t->path, rv == CKR_OK ? "reset" : "give a try back to",
               role_name(which),
               rv == CKR_OK ? "; retried before the next login's try" : "");
    } else if (rv == CKR_PIN_INCORRECT) {
        kt_log(KT_LOG_WARNING, "token %s: %s PIN incorrect (%lu of %lu tries)",
               t->path, role_name(which), (unsigned long)c->failures,
               (unsigned long)kt_g.cfg.pin_max_retries);
    } else if (c->rec.present) {
        kt_log(KT_LOG_ERROR,
               "token %s: %s PIN record damaged (the verifier matched but "
               "the record does not open the master key)",
               t->path, role_name(which));
    }
}

/* The PIN against the charged record, and the master key it opens against
 * the integrity key's binding. */
static KT_NODISCARD CK_RV check_pin(struct kt_token *t, int which,
                                    const struct charge *c,
                                    const unsigned char *pin, CK_ULONG len,
                                    const unsigned char ik[32],
                                    unsigned char mk[32], bool *unbound)
{
    CK_RV rv = kt_pin_open(&c->rec, pin, len, mk, which, t->serial);
    if (rv != CKR_OK)
        return rv;
    /* The integrity key must be the one the master key was bound to: a
     * replaced <serial>.key (and a database re-MACed with it) is caught
     * here, by whoever knows a PIN. */
    rv = kt_pin_check_bind(&c->rec, mk, which, t->serial, ik);
    if (rv == CKR_DATA_INVALID) {
        kt_log(KT_LOG_ERROR,
               "token %s refused: its integrity key file (.key) does not "
               "belong to its master key (replaced outside the token); login "
               "refused",
               t->path);
        *unbound = true;
        rv = CKR_DEVICE_ERROR;
    }
    if (rv != CKR_OK)
        kt_wipe(mk, 32);
    return rv;
}

/* Checks a PIN against a record. One try is charged to the counter, in the
 * store, BEFORE the PIN is checked, so parallel guesses (threads or
 * processes) never get more than pin_max_retries wrong attempts; a success
 * gives the try back, and so does a check that could not be made (memory).
 * The counter is part of the authenticated PIN records: a counter reset
 * outside the token refuses the token. The KDF runs with no lock held. */
CK_RV kt_login_verify_pin(struct kt_token *t, int which,
                          const unsigned char *pin, CK_ULONG len,
                          unsigned char mk[32])
{
    struct charge c;
    unsigned char ik[32];
    memset(&c, 0, sizeof(c));
    c.which = which;
    c.max = kt_g.cfg.pin_max_retries;
    CK_RV rv = kt_token_sync(t); /* a record changed by another process */
    if (rv != CKR_OK)
        return rv;
    pthread_rwlock_rdlock(&t->lock);
    bool present = t->pins[which].present;
    bool refused = t->man_refused;
    memcpy(ik, t->ik, sizeof(ik));
    pthread_rwlock_unlock(&t->lock);
    if (refused) {
        kt_log(KT_LOG_ERROR, "token %s: login refused: the token is refused",
               t->path);
        rv = CKR_DEVICE_ERROR;
        goto out;
    }
    if (!present) {
        rv = CKR_USER_PIN_NOT_INITIALIZED;
        goto out;
    }
    retry_reset(t, which);
    rv = kt_token_pins_write(t, charge_fn, &c, NULL);
    if (rv != CKR_OK) {
        if (rv == CKR_DEVICE_ERROR)
            kt_log(KT_LOG_ERROR,
                   "token %s: cannot charge the PIN retry counter; PIN not "
                   "checked",
                   t->path);
        goto out;
    }
    bool unbound = false;
    rv = check_pin(t, which, &c, pin, len, ik, mk, &unbound);
    if (!unbound) /* logged: the try stays charged */
        settle(t, which, &c, rv);
out:
    kt_wipe(&c, sizeof(c));
    kt_wipe(ik, sizeof(ik));
    return rv;
}

/* Every object was authenticated when it was loaded; key material is
 * unsealed once, at login, not per operation, outside the lock. If memory
 * runs out the login is undone: no key stays sealed behind a CKR_OK. */
static KT_NODISCARD CK_RV unseal_or_undo(struct kt_token *t, CK_USER_TYPE user)
{
    CK_RV rv = kt_token_unseal_pending(t);
    if (rv == CKR_OK)
        return rv;
    kt_token_wrlock(t);
    if (t->login == user)
        kt_login_drop_locked(t);
    pthread_rwlock_unlock(&t->lock);
    kt_session_forget_keys(t, 0);
    return rv;
}

CK_RV kt_login(struct kt_token *t, CK_USER_TYPE user, const unsigned char *pin,
               CK_ULONG len)
{
    unsigned char mk[32];
    int which = user == CKU_SO ? KT_PIN_SO : KT_PIN_USER;
    CK_RV rv = kt_login_verify_pin(t, which, pin, len, mk);
    if (rv != CKR_OK)
        goto out;
    kt_token_wrlock(t);
    if (t->login != KT_NO_LOGIN) {
        rv = t->login == user ? CKR_USER_ALREADY_LOGGED_IN
                              : CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
    } else {
        memcpy(t->mk, mk, sizeof(mk));
        t->mk_loaded = true;
        t->login = user;
        kt_nodump_token(t, true);
    }
    pthread_rwlock_unlock(&t->lock);
    if (rv == CKR_OK)
        rv = unseal_or_undo(t, user);
out:
    kt_wipe(mk, sizeof(mk));
    return rv;
}

/* C_Login(CKU_CONTEXT_SPECIFIC): the user PIN again, for one
 * operation on a CKA_ALWAYS_AUTHENTICATE key; the login state is unchanged.
 */
CK_RV kt_login_context(struct kt_token *t, const unsigned char *pin,
                       CK_ULONG len)
{
    unsigned char mk[32];
    pthread_rwlock_rdlock(&t->lock);
    bool user = t->login == CKU_USER;
    pthread_rwlock_unlock(&t->lock);
    if (!user)
        return CKR_USER_NOT_LOGGED_IN;
    CK_RV rv = kt_login_verify_pin(t, KT_PIN_USER, pin, len, mk);
    kt_wipe(mk, sizeof(mk));
    return rv;
}

void kt_login_drop_locked(struct kt_token *t)
{
    /* PKCS#11 v2.40 §5.6 C_Logout: handles to private objects become
     * invalid (for good), private session objects are destroyed. The login
     * goes first: a private session object created meanwhile (under its
     * shard's lock only) is either swept or refused. */
    t->login = KT_NO_LOGIN;
    kt_nodump_token(t, false);
    kt_token_forget_private(t);
    t->mk_loaded = false;
    kt_wipe(t->mk, sizeof(t->mk));
    kt_token_reseal_all(t);
}

void kt_logout(struct kt_token *t)
{
    kt_login_retry_resets(t);
    kt_token_wrlock(t);
    kt_login_drop_locked(t);
    pthread_rwlock_unlock(&t->lock);
    /* No unsealed key stays behind in a session's cached snapshot. */
    kt_session_forget_keys(t, 0);
}

/* A PIN change: a new master key for the role's new key pair; the other
 * role's public key, checked against the binding made with the current
 * master key (a public key substituted in the file never receives the new
 * one), gets a new box. Runs inside the PIN write transaction on the
 * authentic stored records. */
struct rekey {
    int which;
    struct kt_pin fresh;
    unsigned char old_mk[32];
    unsigned char new_mk[32];
    unsigned char ik[32];
    const char *serial;
    const char *path;
};

static KT_NODISCARD CK_RV rekey_fn(void *ctx, struct kt_pin pins[2])
{
    struct rekey *r = ctx;
    int other = r->which == KT_PIN_SO ? KT_PIN_USER : KT_PIN_SO;
    /* The record that receives the new master key is checked; without
     * one, the role's own record shows the master key is still current. */
    int w = pins[other].present ? other : r->which;
    CK_RV rv = pins[w].present
                   ? kt_pin_check_bind(&pins[w], r->old_mk, w, r->serial, r->ik)
                   : CKR_DATA_INVALID;
    if (rv == CKR_HOST_MEMORY)
        return rv; /* not judged */
    if (rv != CKR_OK) {
        kt_log(KT_LOG_ERROR,
               "token %s: the %s PIN record is not bound to the master key (a "
               "public key substituted outside the token, or a PIN changed "
               "meanwhile by another process); PIN not changed",
               r->path, w == KT_PIN_SO ? "SO" : "user");
        return CKR_DEVICE_ERROR;
    }
    if (pins[other].present)
        rv = kt_pin_box(&pins[other], r->new_mk, other, r->serial, r->ik);
    if (rv == CKR_OK)
        rv = kt_pin_box(&r->fresh, r->new_mk, r->which, r->serial, r->ik);
    if (rv == CKR_OK)
        pins[r->which] = r->fresh;
    return rv;
}

/* which gets a new PIN (its record made already: the KDF runs before the
 * transaction); old_mk is the master key now. */
static KT_NODISCARD CK_RV rekey(struct kt_token *t, int which,
                                const unsigned char *pin, CK_ULONG len,
                                const unsigned char old_mk[32])
{
    struct rekey r;
    struct kt_store_reseal rs;
    memset(&r, 0, sizeof(r));
    r.which = which;
    r.serial = t->serial;
    r.path = t->path;
    memcpy(r.old_mk, old_mk, 32);
    pthread_rwlock_rdlock(&t->lock);
    memcpy(r.ik, t->ik, 32);
    pthread_rwlock_unlock(&t->lock);
    CK_RV rv = kt_pin_make(&r.fresh, pin, len, kt_g.cfg.pin_kdf_cost, which,
                           t->serial);
    if (rv == CKR_OK)
        rv = kt_ossl_random(r.new_mk, 32);
    if (rv == CKR_OK) {
        memcpy(rs.old_mk, old_mk, 32);
        memcpy(rs.new_mk, r.new_mk, 32);
        rv = kt_token_pins_write(t, rekey_fn, &r, &rs);
        kt_wipe(&rs, sizeof(rs));
    }
    if (rv == CKR_OK)
        kt_log(KT_LOG_INFO,
               "token %s: %s PIN changed; new master key, every object "
               "resealed",
               t->path, which == KT_PIN_SO ? "SO" : "user");
    kt_wipe(&r, sizeof(r));
    return rv;
}

CK_RV kt_login_init_pin(struct kt_token *t, const unsigned char *pin,
                        CK_ULONG len)
{
    unsigned char mk[32];
    pthread_rwlock_rdlock(&t->lock);
    bool loaded = t->mk_loaded;
    memcpy(mk, t->mk, sizeof(mk));
    pthread_rwlock_unlock(&t->lock);
    CK_RV rv =
        loaded ? rekey(t, KT_PIN_USER, pin, len, mk) : CKR_USER_NOT_LOGGED_IN;
    kt_wipe(mk, sizeof(mk));
    /* No snapshot of a key unsealed under the old master key stays. */
    if (rv == CKR_OK)
        kt_session_forget_keys(t, 0);
    return rv;
}

CK_RV kt_login_set_pin(struct kt_token *t, int which,
                       const unsigned char *old_pin, CK_ULONG old_len,
                       const unsigned char *new_pin, CK_ULONG new_len)
{
    unsigned char mk[32];
    /* A new master key: every object is resealed under it, so an old copy
     * of this PIN record (and the old PIN) opens nothing made after the
     * change. */
    CK_RV rv = kt_login_verify_pin(t, which, old_pin, old_len, mk);
    if (rv == CKR_OK)
        rv = kt_login_check_pin_len(new_len);
    if (rv == CKR_OK)
        rv = rekey(t, which, new_pin, new_len, mk);
    kt_wipe(mk, sizeof(mk));
    if (rv == CKR_OK)
        kt_session_forget_keys(t, 0);
    return rv;
}
