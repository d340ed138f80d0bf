/* Must-use results, spelled one way in the module and the library: every
 * internal function that returns CK_RV or keytier_err is declared with it
 * (tools/check-layers.sh --nodiscard checks the CK_RV ones). */
#ifndef KT_COMMON_NODISCARD_H
#define KT_COMMON_NODISCARD_H

#define KT_NODISCARD __attribute__((warn_unused_result))

#endif
