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
