/* Must-use results, spelled one way in the module and the library: every
 * internal function that returns CK_RV or keytier_err is declared with it
 * (tools/check-layers.sh --nodiscard checks the CK_RV ones). */
#ifndef KT_COMMON_NODISCARD_H
#define KT_COMMON_NODISCARD_H

#define KT_NODISCARD __attribute__((warn_unused_result))

/* A result deliberately not acted on: a clean-up call (close, logout,
 * destroy of a temporary) whose failure its callee has already logged and
 * that leaves nothing for the caller to do. A cast to void does not silence
 * warn_unused_result, and this spelling shows the choice was made. */
#define KT_IGNORE_RESULT(expr)                                                 \
    do {                                                                       \
        __typeof__(expr) kt_ignored_ = (expr);                                 \
        (void)kt_ignored_;                                                     \
    } while (0)

#endif
