/* The module's state: one instance per process, owned by the core and
 * changed only by C_Initialize and C_Finalize (api/p11_general.c). */
#include "kt.h"

struct kt_module kt_g = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .sess = {[0 ... KT_SHARDS - 1] = {.lock = PTHREAD_RWLOCK_INITIALIZER}}};

CK_RV kt_check_init(void)
{
    return kt_g.initialized ? CKR_OK : CKR_CRYPTOKI_NOT_INITIALIZED;
}

/* The secure heap is made when the module is loaded: OpenSSL's
 * CRYPTO_secure_malloc_init is not thread-safe, and a host that starts its
 * modules on parallel threads (libkeytier does) runs other modules'
 * C_Initialize, whose OpenSSL calls allocate from that heap, beside ours.
 * Loading happens before any C_* call of the module, on the thread that
 * loads it; a host must not load it while other threads of it use
 * OpenSSL (docs/DESIGN.md §1). With -z nodelete this runs once per
 * process. */
__attribute__((constructor)) static void kt_module_loaded(void)
{
    kt_secure_make(kt_config_heap_size());
}
