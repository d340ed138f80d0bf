/* C_InitToken: a new token's files, or the re-initialisation of an
 * existing one. */
#include "kt.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kt_file.h"
#include "ossl/ossl.h"
#include "store/store.h"
#include "token_int.h"

static KT_NODISCARD CK_RV mkdir_p(const char *dir)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (!kt_dir_create_private(tmp))
            return CKR_DEVICE_ERROR;
        *p = '/';
    }
    if (!kt_dir_create_private(tmp))
        return CKR_DEVICE_ERROR;
    return CKR_OK;
}

/* A new SO record for a new master key mk under integrity key ik. */
static KT_NODISCARD CK_RV new_so(struct kt_pin *so, const unsigned char *so_pin,
                                 CK_ULONG len, const unsigned char mk[32],
                                 const char serial[KT_SERIAL_LEN],
                                 const unsigned char ik[32])
{
    CK_RV rv =
        kt_pin_make(so, so_pin, len, kt_g.cfg.pin_kdf_cost, KT_PIN_SO, serial);
    if (rv == CKR_OK)
        rv = kt_pin_box(so, mk, KT_PIN_SO, serial, ik);
    return rv;
}

/* Re-initialisation: a new integrity key (written beside the old one,
 * renamed over it once the database commit is done), a new master key, an
 * empty token. A crash between the commit and the rename leaves a database
 * the old key does not authenticate: the token is refused (logged). */
static KT_NODISCARD CK_RV reinit(struct kt_token *t,
                                 const unsigned char *so_pin, CK_ULONG len,
                                 const unsigned char *label)
{
    unsigned char mk[32], ik[32], seq_key[32];
    struct kt_pin so;
    struct kt_store_keys k;
    struct kt_manifest man;
    char base[PATH_MAX];
    memset(&so, 0, sizeof(so));
    memset(&k, 0, sizeof(k));
    kt_tok_base(t, base);
    CK_RV rv = kt_ossl_random(mk, sizeof(mk));
    if (rv == CKR_OK)
        rv = kt_keyfile_prepare(base, ik);
    if (rv == CKR_OK)
        rv = kt_seal_keys(ik, k.mac, k.manifest, seq_key);
    if (rv == CKR_OK)
        rv = new_so(&so, so_pin, len, mk, t->serial, ik);
    if (rv != CKR_OK) {
        kt_keyfile_discard(base);
        goto out;
    }
    pthread_mutex_lock(&t->dblock);
    rv = kt_store_reinit(t->db, (const char *)label, &so, &k, &man);
    /* Our own new epoch: not another process's re-initialisation. */
    if (rv == CKR_OK)
        rv = kt_store_read_epoch(t->db, t->epoch);
    if (rv == CKR_OK)
        rv = kt_keyfile_install(base);
    else
        kt_keyfile_discard(base);
    if (rv == CKR_OK)
        rv = kt_seq_advance(base, t->key_fd, seq_key, t->serial, man.ctr, true);
    kt_wipe(seq_key, sizeof(seq_key));
    if (rv == CKR_OK) {
        kt_token_wrlock(t);
        rv = kt_tok_open_key(t);
        memcpy(t->label, label, KT_LABEL_LEN);
        kt_tok_drop_session_objects(t, 0, false);
        kt_tok_drop_token_objects(t);
        t->man_refused = false;
        t->man_ctr_seen = 0;
        pthread_rwlock_unlock(&t->lock);
        t->loaded = false;
        t->seen_gen = -1;
        if (rv == CKR_OK)
            rv = kt_tok_sync_locked(t);
        kt_log(KT_LOG_INFO,
               "token %s re-initialised: objects and user PIN removed, new "
               "integrity and master keys",
               t->path);
    }
    pthread_mutex_unlock(&t->dblock);
out:
    kt_wipe(mk, sizeof(mk));
    kt_wipe(ik, sizeof(ik));
    kt_wipe(seq_key, sizeof(seq_key));
    kt_wipe(&k, sizeof(k));
    kt_wipe(&so, sizeof(so));
    return rv;
}

/* A fresh serial (16 hex digits) and the token's path under dir, which is
 * created if missing. */
static KT_NODISCARD CK_RV new_path(struct kt_token *t, const char *dir,
                                   char serial[KT_SERIAL_LEN + 1])
{
    unsigned char sr[8];
    CK_RV rv = kt_ossl_random(sr, sizeof(sr));
    if (rv != CKR_OK)
        return rv;
    for (int i = 0; i < 8; i++)
        snprintf(serial + 2 * i, 3, "%02x", sr[i]);
    rv = mkdir_p(dir);
    if (rv != CKR_OK) {
        kt_log(KT_LOG_ERROR, "token_dir %s: cannot create: %s", dir,
               strerror(errno));
        return rv;
    }
    snprintf(t->path, sizeof(t->path), "%s/%s.db", dir, serial);
    return CKR_OK;
}

/* A new token's files, t->db left open. The integrity key first (O_EXCL,
 * synced), then the database, then <serial>.seq: a token is listed only
 * once its database exists. What was made is removed on failure. */
static KT_NODISCARD CK_RV create_files(struct kt_token *t, const char *serial,
                                       const unsigned char *so_pin,
                                       CK_ULONG len, const unsigned char *label,
                                       struct kt_pin *so)
{
    unsigned char mk[32], ik[32], seq_key[32];
    struct kt_store_keys k;
    char base[PATH_MAX];
    memset(&k, 0, sizeof(k));
    kt_tok_base(t, base);
    CK_RV rv = kt_keyfile_create(base, ik);
    if (rv != CKR_OK)
        goto out;
    rv = kt_seal_keys(ik, k.mac, k.manifest, seq_key);
    if (rv == CKR_OK)
        rv = kt_ossl_random(mk, sizeof(mk));
    if (rv == CKR_OK)
        rv = new_so(so, so_pin, len, mk, serial, ik);
    if (rv == CKR_OK)
        rv = kt_store_create(t->path, (const char *)label, serial, so, &k,
                             &t->db);
    if (rv == CKR_OK) {
        rv = kt_seq_advance(base, -1, seq_key, serial, 0, true);
        if (rv != CKR_OK) {
            kt_store_close(t->db);
            t->db = NULL;
            unlink(t->path);
        }
    }
    if (rv != CKR_OK) {
        char key[PATH_MAX + 8];
        snprintf(key, sizeof(key), "%s.key", base);
        unlink(key);
    }
out:
    kt_wipe(mk, sizeof(mk));
    kt_wipe(ik, sizeof(ik));
    kt_wipe(seq_key, sizeof(seq_key));
    kt_wipe(&k, sizeof(k));
    return rv;
}

/* The new token's files made: its keys, label and SO record into t, its
 * rows loaded; from here it is listed as initialised. */
static KT_NODISCARD CK_RV install_new(struct kt_token *t, const char *serial,
                                      const unsigned char *label,
                                      const struct kt_pin *so)
{
    kt_token_wrlock(t);
    memcpy(t->serial, serial, KT_SERIAL_LEN);
    memcpy(t->label, label, KT_LABEL_LEN);
    CK_RV rv = kt_tok_open_key(t);
    t->pins[KT_PIN_SO] = *so;
    memset(&t->pins[KT_PIN_USER], 0, sizeof(t->pins[KT_PIN_USER]));
    pthread_rwlock_unlock(&t->lock);
    if (rv != CKR_OK)
        return rv;
    pthread_mutex_lock(&t->dblock);
    rv = kt_tok_sync_locked(t);
    pthread_mutex_unlock(&t->dblock);
    kt_token_wrlock(t);
    t->initialized = true;
    pthread_rwlock_unlock(&t->lock);
    kt_log(KT_LOG_INFO, "token %s created", t->path);
    return rv;
}

CK_RV kt_token_init(struct kt_token *t, const char *dir,
                    const unsigned char *so_pin, CK_ULONG len,
                    const unsigned char *label)
{
    CK_RV rv;
    if (t->initialized) {
        /* Re-initialisation: the SO proves the PIN (a try is charged first,
         * as at login), then every object goes. */
        unsigned char mk[32];
        rv = kt_login_verify_pin(t, KT_PIN_SO, so_pin, len, mk);
        kt_wipe(mk, sizeof(mk));
        if (rv == CKR_OK)
            rv = reinit(t, so_pin, len, label);
        return rv;
    }
    struct kt_pin so;
    char serial[KT_SERIAL_LEN + 1];
    memset(&so, 0, sizeof(so));
    rv = new_path(t, dir, serial);
    if (rv == CKR_OK)
        rv = create_files(t, serial, so_pin, len, label, &so);
    if (rv == CKR_OK)
        rv = kt_store_read_epoch(t->db, t->epoch);
    if (rv == CKR_OK)
        rv = install_new(t, serial, label, &so);
    kt_wipe(&so, sizeof(so));
    return rv;
}
