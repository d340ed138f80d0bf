/* The seed generator's parts (gen_seeds.c): each writes one target's seeds
 * into the folder d. */
#ifndef KT_FUZZ_GEN_H
#define KT_FUZZ_GEN_H

#include "fuzz_module.h"

void gen_template(struct fz_env *e, const char *d);
void gen_mech(struct fz_env *e, const char *d);
void gen_unwrap(struct fz_env *e, const char *d);
void gen_pin(const char *d);

#endif
