/*
 * A bounded pool of worker threads that runs token calls with a deadline.
 *
 * PKCS#11 calls cannot be cancelled (v2.40 §5.15 C_CancelFunction is a
 * legacy no-op), so a call that misses its deadline keeps its worker until
 * the token answers; the caller has already been told KT_CKR_TIMEOUT (a
 * "system" failure) and the late result is dropped through the call's
 * discard hook (e.g. destroy the object a late C_UnwrapKey created).
 *
 * A hung token cannot take the whole pool: at most per_token calls of one
 * token run at once, and once per_token of its calls are hung past their
 * deadline, new calls to that token fail at once with KT_CKR_TOKEN_HUNG
 * instead of waiting for a worker.  Calls to other tokens keep their
 * workers.
 */
#ifndef KT_CALL_POOL_H
#define KT_CALL_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include <p11-kit/pkcs11.h>

#include "ckr_class.h"

typedef struct kt_pool kt_pool;

typedef struct kt_pool_config {
    unsigned max_workers; /* threads in all; started on demand */
    unsigned per_token;   /* running (and hung) calls of one token */
    /* kt_pool_free waits at most this long for workers still finishing a
     * call nobody has abandoned (0: 1000 ms) */
    unsigned free_wait_ms;
} kt_pool_config;

/*
 * One token call.  The callbacks run in this order and each at most once:
 *   run(ctx)          on a worker: the PKCS#11 work; its CK_RV is the result
 *   accept(ctx, rv)   on the caller's thread, when the caller takes the
 *                     result (copy outputs out of ctx here)
 *   discard(ctx, rv)  when nobody takes the result (deadline passed, or the
 *                     hedge partner won): undo side effects of a success
 *   release(ctx)      always, exactly once, last: free ctx
 * Only run is required.  ctx must not point into the caller's stack: a late
 * call outlives the caller.
 */
typedef struct kt_call {
    const char *name; /* for logs, e.g. "C_UnwrapKey" */
    uint64_t token;   /* identity of the token the call needs */
    CK_RV (*run)(void *ctx);
    void (*accept)(void *ctx, CK_RV rv);
    void (*discard)(void *ctx, CK_RV rv);
    void (*release)(void *ctx);
    void *ctx;
} kt_call;

/* NULL on bad config (zero sizes) or allocation failure. */
kt_pool *kt_pool_new(const kt_pool_config *config);

/*
 * Stops the workers and drops the caller's reference.  Queued jobs run
 * first; then every worker that is not inside an abandoned (hung) call is
 * waited for and joined, at most config.free_wait_ms, so that a process
 * that exits right after has no worker of ours tearing down its thread
 * state (OpenSSL's among it) while the exit handlers run.  Workers still
 * inside a hung call finish it, discard its result and exit detached; the
 * last one frees the pool.  No kt_pool_run may be in progress or start
 * afterwards.  May be called from a worker of the pool (that worker is
 * not waited for).
 */
void kt_pool_free(kt_pool *pool);

/*
 * Runs call on a worker and waits at most deadline_ms.  Returns the call's
 * CK_RV, or KT_CKR_TIMEOUT (deadline passed, result will be discarded),
 * KT_CKR_TOKEN_HUNG (too many calls of this token hung), CKR_HOST_MEMORY.
 */
KT_NODISCARD CK_RV kt_pool_run(kt_pool *pool, const kt_call *call,
                               unsigned deadline_ms);

/*
 * The hedged pair of DESIGN.md §2: starts calls[0]; starts calls[1] as soon
 * as calls[0] has failed or hedge_ms have passed with calls[0] pending.
 * The first success wins; the other result is discarded whenever it comes.
 * Each call has its own deadline of deadline_ms from its start.
 *
 * Returns CKR_OK with *winner set (0 or 1) when a call succeeded; otherwise
 * the failure of calls[0], with rv[0] and rv[1] holding both failures
 * (KT_CKR_NOT_STARTED for a call never started).  On success the loser's
 * rv[] entry is KT_CKR_NOT_STARTED if it never ran, otherwise unspecified.
 */
KT_NODISCARD CK_RV kt_pool_hedge(kt_pool *pool, const kt_call calls[2],
                                 unsigned hedge_ms, unsigned deadline_ms,
                                 int *winner, CK_RV rv[2]);

/*
 * Runs call on a worker without waiting for it (work whose outcome the
 * caller learns some other way, e.g. a module scan that updates shared
 * state).  The worker calls accept(ctx, rv) then release(ctx) when the
 * call returns; discard is never called.  Returns CKR_OK, or
 * KT_CKR_TOKEN_HUNG / CKR_HOST_MEMORY with the call already released.
 */
KT_NODISCARD CK_RV kt_pool_post(kt_pool *pool, const kt_call *call);

/* True on a worker thread of any pool: such code runs token calls inline
 * and never waits for another job (the pool could be full of waiters). */
bool kt_pool_on_worker(void);

/* Calls of this token that are past their deadline and still running. */
unsigned kt_pool_hung(kt_pool *pool, uint64_t token);

#endif
