#include "sec.h"

#include <stdio.h>
#include <string.h>

/* libcheck's START_TEST(name) defines name_fn: report the test's name. */
static int name_len(const char *test)
{
    size_t n = strlen(test);
    if (n > 3 && strcmp(test + n - 3, "_fn") == 0)
        n -= 3;
    return (int)n;
}

void sec_outcome(const char *test, bool refused, const char *attack)
{
    if (kt_test_is_softhsm()) {
        printf("softhsm2: %.*s: %s (%s)\n", name_len(test), test,
               refused ? "refused" : "ATTACK SUCCEEDED", attack);
        fflush(stdout);
        return;
    }
    ck_assert_msg(refused, "%.*s: attack succeeded: %s", name_len(test), test,
                  attack);
}

void sec_not_applicable(const char *test, const char *why)
{
    printf("softhsm2: %.*s: not applicable (%s)\n", name_len(test), test, why);
    fflush(stdout);
}
