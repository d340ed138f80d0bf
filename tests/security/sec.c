#include "sec.h"

#include <stdio.h>

void sec_outcome(const char *test, bool refused, const char *attack)
{
    if (kt_test_is_softhsm()) {
        printf("softhsm2: %s: %s (%s)\n", test,
               refused ? "refused" : "ATTACK SUCCEEDED", attack);
        fflush(stdout);
        return;
    }
    ck_assert_msg(refused, "%s: attack succeeded: %s", test, attack);
}

void sec_not_applicable(const char *test, const char *why)
{
    printf("softhsm2: %s: not applicable (%s)\n", test, why);
    fflush(stdout);
}
