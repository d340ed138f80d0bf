/* allow_core_dumps = no: the process is non-dumpable while any token of the
 * module is logged in (PR_SET_DUMPABLE), and dumpable as before once none
 * is. */
#include "kt.h"

#include <string.h>
#include <sys/prctl.h>

/* How many tokens are logged in, and the process's dumpable flag from
 * before the first of them. */
static pthread_mutex_t dump_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned dump_holders;
static int dump_before = -1;

static void dump_restore(void)
{
    /* PR_SET_DUMPABLE takes 0 or 1 only: a process that was at 2
     * (suid_dumpable) stays non-dumpable. */
    if (dump_before == 1 && prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0)
        kt_log(KT_LOG_WARNING, "cannot make the process dumpable again");
    dump_before = -1;
}

void kt_nodump_token(struct kt_token *t, bool logged_in)
{
    if (t->nodump == logged_in)
        return;
    t->nodump = logged_in;
    pthread_mutex_lock(&dump_lock);
    if (logged_in) {
        if (dump_holders++ == 0 && !kt_g.cfg.allow_core_dumps) {
            dump_before = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
            if (dump_before != 0 && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
                kt_log(KT_LOG_WARNING,
                       "cannot make the process non-dumpable: a core "
                       "dump would hold key schedules");
        }
    } else if (dump_holders > 0 && --dump_holders == 0) {
        dump_restore();
    }
    pthread_mutex_unlock(&dump_lock);
}

void kt_nodump_reset(bool fork_child)
{
    if (fork_child) {
        /* Another thread of the parent may have held it. */
        pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
        memcpy(&dump_lock, &fresh, sizeof(fresh));
    }
    pthread_mutex_lock(&dump_lock);
    dump_holders = 0;
    dump_restore();
    pthread_mutex_unlock(&dump_lock);
}
