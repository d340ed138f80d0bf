/* The drivers and checkers of the crash trials' areas (tests/crash). */
#ifndef KT_CRASH_AREA_H
#define KT_CRASH_AREA_H

#include <stdint.h>

/* keytier's module: a token written through the PKCS#11 API. */
int crash_token_drive(const char *dir, uint64_t seed);
int crash_token_check(const char *dir);

/* libkeytier: DEPs, tier keys, rolls, a migration, the audit log. */
#define CRASH_MIG_TENANT "org-mig"
#define CRASH_MIG_KEYS   300 /* two batches of a migration (256 a batch) */
int crash_lib_drive(const char *dir, uint64_t seed);
int crash_lib_check(const char *dir);
/* Seals data under every 30th key of the migration tenant (set-up). */
int crash_lib_seal_migration_data(const char *dir);

#endif
