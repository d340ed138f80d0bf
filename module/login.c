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

static void set_failures(struct kt_token *t, int which, CK_ULONG n)
{
    pthread_mutex_lock(&t->dblock);
    CK_RV rv = kt_store_set_failures(t->db, which, n);
    pthread_mutex_unlock(&t->dblock);
    if (rv != CKR_OK)
        kt_log(KT_LOG_ERROR, "token %s: cannot record PIN failure count",
               t->path);
    kt_token_wrlock(t);
    t->pins[which].failures = n;
    pthread_rwlock_unlock(&t->lock);
}

/* Checks a PIN against a record. One try is charged to the counter, in the
 * store, BEFORE the PIN is checked, so parallel guesses (threads or
 * processes) never get more than pin_max_retries wrong attempts; a success
 * gives the try back. The KDF runs with no lock held. */
CK_RV kt_login_verify_pin(struct kt_token *t, int which,
                          const unsigned char *pin, CK_ULONG len,
                          unsigned char mk[32])
{
    CK_ULONG failures = 0;
    CK_RV rv = kt_token_sync(t); /* a record changed by another process */
    if (rv != CKR_OK)
        return rv;
    pthread_rwlock_rdlock(&t->lock);
    struct kt_pin p = t->pins[which];
    pthread_rwlock_unlock(&t->lock);
    if (!p.present) {
        rv = CKR_USER_PIN_NOT_INITIALIZED;
        goto out;
    }
    pthread_mutex_lock(&t->dblock);
    rv = kt_store_pin_charge(t->db, which, kt_g.cfg.pin_max_retries, &failures);
    pthread_mutex_unlock(&t->dblock);
    if (rv == CKR_OK || rv == CKR_PIN_LOCKED) {
        kt_token_wrlock(t);
        t->pins[which].failures = failures;
        pthread_rwlock_unlock(&t->lock);
    }
    if (rv != CKR_OK) {
        if (rv == CKR_DEVICE_ERROR)
            kt_log(KT_LOG_ERROR,
                   "token %s: cannot charge the PIN retry counter; PIN not "
                   "checked",
                   t->path);
        goto out;
    }
    rv = kt_pin_open(&p, pin, len, mk, which, t->serial);
    if (rv == CKR_OK) {
        set_failures(t, which, 0);
    } else if (rv == CKR_PIN_INCORRECT) {
        kt_log(KT_LOG_WARNING, "token %s: %s PIN incorrect (%lu of %lu tries)",
               t->path, which == KT_PIN_SO ? "SO" : "user",
               (unsigned long)failures,
               (unsigned long)kt_g.cfg.pin_max_retries);
    } else if (rv == CKR_DEVICE_ERROR) {
        kt_log(KT_LOG_ERROR,
               "token %s: %s PIN record damaged (the verifier matched but "
               "the wrapped master key does not authenticate)",
               t->path, which == KT_PIN_SO ? "SO" : "user");
    }
out:
    kt_wipe(&p, sizeof(p));
    return rv;
}

/* The earlier name, used by module-asym's kt_login_context. */
#define check_pin kt_login_verify_pin

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
        kt_seal_mac_key(t->mk, t->mac_key);
        kt_seal_manifest_key(t->mk, t->man_key);
        t->mk_loaded = true;
        /* Every record is verified now: the set is checked with them. */
        t->man_dirty = true;
        t->login = user;
        kt_nodump_token(t, true);
    }
    pthread_rwlock_unlock(&t->lock);
    /* Every object is authenticated before any logged-in use (unverified
     * objects are invisible meanwhile), and key material is unsealed once,
     * here, not per operation; the cryptography runs outside the lock. */
    if (rv == CKR_OK)
        kt_token_unseal_pending(t);
out:
    kt_wipe(mk, sizeof(mk));
    return rv;
}

/* C_Login(CKU_CONTEXT_SPECIFIC) (module-asym): the user PIN again, for one
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
    CK_RV rv = check_pin(t, KT_PIN_USER, pin, len, mk);
    kt_wipe(mk, sizeof(mk));
    return rv;
}

void kt_logout(struct kt_token *t)
{
    kt_token_wrlock(t);
    /* PKCS#11 v2.40 §5.6 C_Logout: handles to private objects become
     * invalid (for good), private session objects are destroyed. The login
     * goes first: a private session object created meanwhile (under its
     * shard's lock only) is either swept or refused. */
    t->login = KT_NO_LOGIN;
    kt_nodump_token(t, false);
    kt_token_forget_private(t);
    t->mk_loaded = false;
    kt_wipe(t->mk, sizeof(t->mk));
    kt_wipe(t->mac_key, sizeof(t->mac_key));
    kt_wipe(t->man_key, sizeof(t->man_key));
    kt_token_reseal_all(t);
    pthread_rwlock_unlock(&t->lock);
    /* No unsealed key stays behind in a session's cached snapshot. */
    kt_session_forget_keys(t, 0);
}

CK_RV kt_login_init_pin(struct kt_token *t, const unsigned char *pin,
                        CK_ULONG len)
{
    unsigned char mk[32];
    struct kt_pin p;
    pthread_rwlock_rdlock(&t->lock);
    bool loaded = t->mk_loaded;
    memcpy(mk, t->mk, sizeof(mk));
    pthread_rwlock_unlock(&t->lock);
    CK_RV rv = loaded ? CKR_OK : CKR_USER_NOT_LOGGED_IN;
    if (rv == CKR_OK)
        rv = kt_pin_make(&p, pin, len, kt_g.cfg.pin_kdf_cost, mk, KT_PIN_USER,
                         t->serial);
    if (rv == CKR_OK) {
        pthread_mutex_lock(&t->dblock);
        rv = kt_store_write_pin(t->db, KT_PIN_USER, &p);
        pthread_mutex_unlock(&t->dblock);
    }
    if (rv == CKR_OK) {
        kt_token_wrlock(t);
        t->pins[KT_PIN_USER] = p;
        pthread_rwlock_unlock(&t->lock);
    }
    kt_wipe(mk, sizeof(mk));
    kt_wipe(&p, sizeof(p));
    return rv;
}

CK_RV kt_login_set_pin(struct kt_token *t, int which,
                       const unsigned char *old_pin, CK_ULONG old_len,
                       const unsigned char *new_pin, CK_ULONG new_len)
{
    unsigned char mk[32];
    struct kt_pin p;
    memset(&p, 0, sizeof(p));
    /* The master key is rewrapped under the new PIN; objects stay as they
     * are (DESIGN.md §1). */
    CK_RV rv = kt_login_verify_pin(t, which, old_pin, old_len, mk);
    if (rv == CKR_OK)
        rv = kt_login_check_pin_len(new_len);
    if (rv == CKR_OK)
        rv = kt_pin_make(&p, new_pin, new_len, kt_g.cfg.pin_kdf_cost, mk, which,
                         t->serial);
    if (rv == CKR_OK) {
        pthread_mutex_lock(&t->dblock);
        rv = kt_store_write_pin(t->db, which, &p);
        pthread_mutex_unlock(&t->dblock);
    }
    if (rv == CKR_OK) {
        kt_token_wrlock(t);
        t->pins[which] = p;
        pthread_rwlock_unlock(&t->lock);
    }
    kt_wipe(mk, sizeof(mk));
    kt_wipe(&p, sizeof(p));
    return rv;
}
