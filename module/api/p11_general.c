/* General-purpose functions (PKCS#11 v2.40 §5.4); the 3.0 interfaces are in
 * p11_v3.c. */
#include "kt.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ossl/ossl.h"
#include "p11_functions.h"
#include "kt_version.h"
#include "p11str.h"

/* Every session shard for writing, in shard order (C_Initialize,
 * C_Finalize: `initialized` changes only with all of them held). */
static void sess_lock_all(void)
{
    for (unsigned i = 0; i < KT_SHARDS; i++)
        pthread_rwlock_wrlock(&kt_g.sess[i].lock);
}

static void sess_unlock_all(void)
{
    for (unsigned i = KT_SHARDS; i > 0; i--)
        pthread_rwlock_unlock(&kt_g.sess[i - 1].lock);
}

/* Serialises C_Initialize / C_Finalize against each other. */
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* No SQLite transaction may be in flight at fork(): SQLite keeps per-file
 * lock bookkeeping per process, which the child inherits. The
 * initialisation lock (no C_Initialize or C_Finalize half done), the slot
 * lock and every token's database lock are held across fork() (lock order
 * as everywhere: initialisation, slot table, then database). */
static void kt_atfork_prepare(void)
{
    pthread_mutex_lock(&init_lock);
    pthread_mutex_lock(&kt_g.lock);
    for (size_t i = 0; i < kt_g.n_slots; i++)
        pthread_mutex_lock(&kt_g.slots[i].token->dblock);
}

static void kt_atfork_parent(void)
{
    for (size_t i = kt_g.n_slots; i > 0; i--)
        pthread_mutex_unlock(&kt_g.slots[i - 1].token->dblock);
    pthread_mutex_unlock(&kt_g.lock);
    pthread_mutex_unlock(&init_lock);
}

/* A child after fork() must not touch its parent's SQLite connections or
 * locks (SQLite "How To Corrupt" §2.6): it starts uninitialised and the
 * inherited state is abandoned, never freed or closed. */
static void kt_atfork_child(void)
{
    /* Nothing of the parent's secrets stays readable in the child: master
     * keys, unsealed values, cached keys and operation states are wiped
     * (the child is single-threaded here; the containers are abandoned). */
    for (size_t i = 0; i < kt_g.n_slots; i++) {
        struct kt_token *t = kt_g.slots[i].token;
        kt_wipe(t->mk, sizeof(t->mk));
        kt_wipe(t->mac_key, sizeof(t->mac_key));
        kt_wipe(t->man_key, sizeof(t->man_key));
        kt_wipe(t->ik, sizeof(t->ik));
        kt_wipe(t->seq_key, sizeof(t->seq_key));
        t->mk_loaded = false;
        /* The parent's sessions hold the token lock, not the child's. */
        kt_tokenlock_forget(t);
        void *v;
        for (size_t j = 0; kt_hmap_iter(&t->objects, &j, NULL, &v);)
            kt_object_free(v);
        for (unsigned sh = 0; sh < KT_SHARDS; sh++)
            for (size_t j = 0;
                 kt_hmap_iter(&t->shards[sh].objects, &j, NULL, &v);)
                kt_object_free(v);
        kt_token_fork_wipe_dying(t);
    }
    void *sv;
    for (unsigned sh = 0; sh < KT_SHARDS; sh++)
        for (size_t j = 0;
             kt_hmap_iter(&kt_g.sess[sh].sessions, &j, NULL, &sv);) {
            struct kt_session *s = sv;
            for (int k = 0; k < KT_OP_KIND_MAX; k++)
                kt_op_release(&s->ops[k]);
            kt_msg_release(s, true);
            kt_msg_release(s, false);
            kt_session_drop_caches(s);
        }
    /* The locks kt_atfork_prepare took on this thread (initialisation,
     * slot table, databases) are released as any lock is; the session
     * locks may have been held by other threads of the parent, which do
     * not exist here: they are made anew. */
    kt_atfork_parent();
    pthread_rwlock_t fresh3 = PTHREAD_RWLOCK_INITIALIZER;
    for (unsigned sh = 0; sh < KT_SHARDS; sh++) {
        memcpy(&kt_g.sess[sh].lock, &fresh3, sizeof(fresh3));
        kt_hmap_init(&kt_g.sess[sh].sessions);
    }
    kt_g.initialized = false;
    kt_g.slots = NULL;
    kt_g.n_slots = 0;
    /* No key of the parent's is left here: dumpable as before. */
    kt_nodump_reset(true);
}

static void kt_atfork_register(void)
{
    pthread_atfork(kt_atfork_prepare, kt_atfork_parent, kt_atfork_child);
}

static KT_NODISCARD CK_RV check_init_args(const CK_C_INITIALIZE_ARGS *a)
{
    if (a->pReserved != NULL)
        return CKR_ARGUMENTS_BAD;
    int set = (a->CreateMutex != NULL) + (a->DestroyMutex != NULL) +
              (a->LockMutex != NULL) + (a->UnlockMutex != NULL);
    if (set != 0 && set != 4)
        return CKR_ARGUMENTS_BAD;
    /* PKCS#11 v2.40 §5.4: with application mutex functions and without
     * CKF_OS_LOCKING_OK we would have to use the application's locks; this
     * module only uses OS locks. */
    if (set == 4 && !(a->flags & CKF_OS_LOCKING_OK))
        return CKR_CANT_LOCK;
    return CKR_OK;
}

CK_RV C_Initialize(CK_VOID_PTR init_args)
{
    CK_RV rv = CKR_OK;
    pthread_once(&atfork_once, kt_atfork_register);
    if (init_args != NULL) {
        rv = check_init_args(init_args);
        if (rv != CKR_OK)
            return kt_trace("C_Initialize", rv);
    }
    pthread_mutex_lock(&init_lock);
    if (kt_g.initialized) {
        rv = CKR_CRYPTOKI_ALREADY_INITIALIZED;
        goto out;
    }
    struct kt_config cfg;
    rv = kt_config_load(&cfg);
    if (rv != CKR_OK) {
        rv = CKR_GENERAL_ERROR;
        goto out;
    }
    kt_log_open_config(&cfg);
    kt_config_log_no_dir(&cfg);
    kt_secure_init(cfg.secure_heap_size);
    rv = kt_ossl_init(cfg.legacy_mechanisms);
    if (rv != CKR_OK) {
        kt_log(KT_LOG_ERROR, "OpenSSL algorithms unavailable%s",
               cfg.legacy_mechanisms
                   ? " (legacy_mechanisms = yes needs OpenSSL's legacy "
                     "provider for DES)"
                   : "");
        goto out;
    }
    pthread_mutex_lock(&kt_g.lock);
    kt_g.cfg = cfg;
    kt_schema_legacy_set(cfg.legacy_mechanisms);
    kt_g.pid = getpid();
    kt_g.next_free_id = 0;
    for (unsigned sh = 0; sh < KT_SHARDS; sh++)
        kt_hmap_init(&kt_g.sess[sh].sessions);
    rv = kt_slots_scan();
    sess_lock_all();
    if (rv == CKR_OK)
        kt_g.initialized = true;
    sess_unlock_all();
    if (rv != CKR_OK)
        kt_slots_free();
    pthread_mutex_unlock(&kt_g.lock);
out:
    pthread_mutex_unlock(&init_lock);
    return kt_trace("C_Initialize", rv);
}

CK_RV C_Finalize(CK_VOID_PTR reserved)
{
    CK_RV rv = CKR_OK;
    if (reserved != NULL)
        return kt_trace("C_Finalize", CKR_ARGUMENTS_BAD);
    pthread_mutex_lock(&init_lock);
    if (!kt_g.initialized) {
        rv = CKR_CRYPTOKI_NOT_INITIALIZED;
        goto out;
    }
    pthread_mutex_lock(&kt_g.lock);
    sess_lock_all();
    kt_g.initialized = false;
    void *v;
    for (unsigned sh = 0; sh < KT_SHARDS; sh++) {
        for (size_t i = 0; kt_hmap_iter(&kt_g.sess[sh].sessions, &i, NULL, &v);)
            kt_session_unref(v);
        kt_hmap_free(&kt_g.sess[sh].sessions);
    }
    sess_unlock_all();
    kt_slots_free();
    /* Every login is gone with the tokens. */
    kt_nodump_reset(false);
    pthread_mutex_unlock(&kt_g.lock);
    kt_ossl_fini();
    kt_log_close();
out:
    pthread_mutex_unlock(&init_lock);
    return kt_trace("C_Finalize", rv);
}

/* PKCS#11 3.0 §5.4: the version of the interface the caller holds. A
 * caller of the 2.40 list (C_GetFunctionList, or the "PKCS 11" 2.40
 * interface) is told 2.40, so one that checks for major version 2 keeps
 * working; the 3.0 list's C_GetInfo says 3.0. */
static KT_NODISCARD CK_RV get_info(const char *fn, CK_INFO_PTR info,
                                   CK_BYTE major, CK_BYTE minor)
{
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && info == NULL)
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK) {
        memset(info, 0, sizeof(*info));
        info->cryptokiVersion.major = major;
        info->cryptokiVersion.minor = minor;
        kt_p11str_pad(info->manufacturerID, "keytier",
                      sizeof(info->manufacturerID));
        kt_p11str_pad(info->libraryDescription, "keytier software token",
                      sizeof(info->libraryDescription));
        info->libraryVersion.major = KT_VERSION_MAJOR;
        info->libraryVersion.minor = KT_VERSION_MINOR;
    }
    return kt_trace(fn, rv);
}

CK_RV C_GetInfo(CK_INFO_PTR info)
{
    return get_info("C_GetInfo", info, 3, 0);
}

static KT_NODISCARD CK_RV get_info_v240(CK_INFO_PTR info)
{
    return get_info("C_GetInfo", info, 2, 40);
}

static CK_FUNCTION_LIST function_list = {
    {2, 40},
    KT_P11_FUNCTIONS_2_40(get_info_v240),
};

__attribute__((visibility("default"))) CK_RV
C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
    if (list == NULL)
        return CKR_ARGUMENTS_BAD;
    *list = &function_list;
    return CKR_OK;
}

/* PKCS#11 v2.40 §5.17: legacy parallel functions. */
CK_RV C_GetFunctionStatus(CK_SESSION_HANDLE h)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_session_ref(h, &s);
    kt_session_unref(s);
    return kt_trace("C_GetFunctionStatus",
                    rv == CKR_OK ? CKR_FUNCTION_NOT_PARALLEL : rv);
}

CK_RV C_CancelFunction(CK_SESSION_HANDLE h)
{
    struct kt_session *s = NULL;
    CK_RV rv = kt_session_ref(h, &s);
    kt_session_unref(s);
    return kt_trace("C_CancelFunction",
                    rv == CKR_OK ? CKR_FUNCTION_NOT_PARALLEL : rv);
}
