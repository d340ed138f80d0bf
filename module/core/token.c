/* A token: its structure, opened from its files (the database, the
 * integrity key), freed, and what C_GetTokenInfo shows of it. */
#include "kt.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "p11str.h"
#include "store/store.h"
#include "token_int.h"

static struct kt_token *token_alloc(CK_SLOT_ID slot)
{
    /* The shards are aligned to cache lines (kt_secure_alloc: so is every
     * block). The master key and the keys derived from it live in here:
     * the secure heap. */
    struct kt_token *t = kt_secure_alloc(sizeof(*t));
    if (t == NULL)
        return NULL;
    memset(t, 0, sizeof(*t));
    /* A shard's lock is held for a few map operations: spinning a little
     * before sleeping keeps a search over every shard (C_FindObjectsInit)
     * and other sessions' creations and destructions from waking each
     * other through the kernel. */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
    for (unsigned i = 0; i < KT_SHARDS; i++) {
        pthread_mutex_init(&t->shards[i].lock, &ma);
        kt_hmap_init(&t->shards[i].objects);
        kt_hmap_init(&t->shards[i].labels);
    }
    pthread_mutexattr_destroy(&ma);
    t->slot_id = slot;
    t->lock_fd = -1;
    t->login = KT_NO_LOGIN;
    t->seen_gen = -1;
    t->key_fd = -1;
    pthread_mutex_init(&t->dblock, NULL);
    pthread_rwlock_init(&t->lock, NULL);
    kt_hmap_init(&t->objects);
    kt_hmap_init(&t->by_id);
    kt_hmap_init(&t->labels);
    return t;
}

struct kt_token *kt_token_new_free(CK_SLOT_ID slot)
{
    return token_alloc(slot);
}

void kt_token_free(struct kt_token *t)
{
    if (t == NULL)
        return;
    void *v;
    for (size_t i = 0; kt_hmap_iter(&t->objects, &i, NULL, &v);)
        kt_object_free(v);
    kt_hmap_free(&t->objects);
    kt_hmap_free(&t->by_id);
    kt_hmap_free(&t->labels);
    for (unsigned i = 0; i < KT_SHARDS; i++) {
        struct kt_obj_shard *sh = &t->shards[i];
        for (size_t j = 0; kt_hmap_iter(&sh->objects, &j, NULL, &v);)
            kt_object_free(v);
        kt_hmap_free(&sh->objects);
        kt_hmap_free(&sh->labels);
        pthread_mutex_destroy(&sh->lock);
    }
    /* A counter reset a failed write left due: one more try before the
     * process lets the token go (the try stays charged otherwise). */
    if (t->db != NULL && t->initialized)
        kt_login_retry_resets(t);
    kt_tokenlock_release(t);
    kt_store_data_version_free(t->dv_stmt);
    if (t->db != NULL)
        kt_store_close(t->db);
    kt_wipe(t->mk, sizeof(t->mk));
    kt_wipe(t->ik, sizeof(t->ik));
    kt_wipe(t->mac_key, sizeof(t->mac_key));
    kt_wipe(t->man_key, sizeof(t->man_key));
    kt_wipe(t->seq_key, sizeof(t->seq_key));
    if (t->key_fd >= 0)
        close(t->key_fd);
    pthread_mutex_destroy(&t->dblock);
    pthread_rwlock_destroy(&t->lock);
    kt_free_secret(t, sizeof(*t));
}

/* The token's files without ".db": <base>.key, <base>.seq. */
void kt_tok_base(const struct kt_token *t, char out[PATH_MAX])
{
    size_t l = strlen(t->path);
    snprintf(out, PATH_MAX, "%.*s", (int)(l > 3 ? l - 3 : l), t->path);
}

/* The integrity key and the keys derived from it (token lock held for
 * writing, or the token not yet shared). */
static KT_NODISCARD CK_RV keys_from_ik(struct kt_token *t,
                                       const unsigned char ik[32])
{
    memcpy(t->ik, ik, 32);
    return kt_seal_keys(ik, t->mac_key, t->man_key, t->seq_key);
}

KT_NODISCARD CK_RV kt_tok_open_key(struct kt_token *t)
{
    char base[PATH_MAX];
    unsigned char ik[32];
    int fd = -1;
    uint64_t ino = 0;
    kt_tok_base(t, base);
    CK_RV rv = kt_keyfile_read(base, ik, &fd, &ino);
    if (rv == CKR_OK) {
        if (t->key_fd >= 0)
            close(t->key_fd);
        t->key_fd = fd;
        t->key_ino = ino;
        rv = keys_from_ik(t, ik);
    }
    kt_wipe(ik, sizeof(ik));
    return rv;
}

CK_RV kt_token_open(const char *path, CK_SLOT_ID slot, struct kt_token **out)
{
    struct kt_token *t = token_alloc(slot);
    if (t == NULL)
        return CKR_HOST_MEMORY;
    snprintf(t->path, sizeof(t->path), "%s", path);
    CK_RV rv = kt_store_open(path, &t->db);
    if (rv == CKR_OK)
        rv = kt_store_read_meta(t->db, path, t->label, t->serial);
    if (rv == CKR_OK)
        rv = kt_tok_open_key(t);
    if (rv == CKR_OK)
        rv = kt_store_read_pins(t->db, path, t->pins);
    if (rv == CKR_OK)
        rv = kt_store_read_epoch(t->db, t->epoch);
    if (rv == CKR_OK)
        rv = kt_store_data_version(t->db, &t->dv_stmt, &t->data_version);
    if (rv != CKR_OK) {
        kt_token_free(t);
        return rv;
    }
    t->initialized = true;
    kt_log(KT_LOG_INFO, "token %s opened", path);
    *out = t;
    return CKR_OK;
}

void kt_token_token_info(struct kt_token *t, CK_TOKEN_INFO *info)
{
    memset(info, 0, sizeof(*info));
    kt_p11str_pad(info->manufacturerID, "keytier",
                  sizeof(info->manufacturerID));
    kt_p11str_pad(info->model, "keytier soft", sizeof(info->model));
    info->flags = CKF_RNG | CKF_LOGIN_REQUIRED | CKF_RESTORE_KEY_NOT_NEEDED;
    pthread_rwlock_rdlock(&t->lock);
    if (t->initialized) {
        memcpy(info->label, t->label, sizeof(info->label));
        memcpy(info->serialNumber, t->serial, sizeof(info->serialNumber));
        info->flags |= CKF_TOKEN_INITIALIZED;
        const CK_ULONG max = kt_g.cfg.pin_max_retries;
        const struct kt_pin *u = &t->pins[KT_PIN_USER];
        const struct kt_pin *so = &t->pins[KT_PIN_SO];
        if (u->present) {
            info->flags |= CKF_USER_PIN_INITIALIZED;
            if (u->failures >= max)
                info->flags |= CKF_USER_PIN_LOCKED;
            else if (u->failures + 1 == max)
                info->flags |= CKF_USER_PIN_FINAL_TRY;
            if (u->failures > 0 && u->failures < max)
                info->flags |= CKF_USER_PIN_COUNT_LOW;
        }
        if (so->failures >= max)
            info->flags |= CKF_SO_PIN_LOCKED;
        else if (so->failures + 1 == max)
            info->flags |= CKF_SO_PIN_FINAL_TRY;
        if (so->failures > 0 && so->failures < max)
            info->flags |= CKF_SO_PIN_COUNT_LOW;
    } else {
        memset(info->label, ' ', sizeof(info->label));
        memset(info->serialNumber, ' ', sizeof(info->serialNumber));
    }
    pthread_rwlock_unlock(&t->lock);
    info->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
    info->ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE;
    info->ulSessionCount = t->session_count;
    info->ulRwSessionCount = t->rw_session_count;
    info->ulMaxPinLen = kt_g.cfg.pin_max_length;
    info->ulMinPinLen = kt_g.cfg.pin_min_length;
    info->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
    info->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
    info->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
    info->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
    info->hardwareVersion.major = 0;
    info->hardwareVersion.minor = 1;
    info->firmwareVersion.major = 0;
    info->firmwareVersion.minor = 1;
    memset(info->utcTime, ' ', sizeof(info->utcTime));
}
