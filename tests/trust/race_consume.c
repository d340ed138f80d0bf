/*
 * Uses one approval from many contexts at once (each its own store
 * connection, as separate processes would have) released together by a
 * barrier, and prints how the uses ended:
 *     ok=N used=N other=N
 * A single-use approval must give ok=1: the use is one store statement
 * that checks the approval unused and marks it used.
 *
 *   race-consume CONF OP TENANT SCOPE APPROVAL_ID THREADS
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "keytier.h"

#define MAX_THREADS 32

struct racer {
    const char *conf;
    keytier_approval_op op;
    const char *tenant, *scope, *id;
    pthread_barrier_t *go;
    keytier_err result;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    keytier_ctx *ctx = NULL;
    keytier_err e = keytier_ctx_open(r->conf, &ctx);
    pthread_barrier_wait(r->go);
    if (e == KEYTIER_OK)
        e = keytier_approval_consume(ctx, r->op, r->tenant, r->scope, r->id);
    if (e != KEYTIER_OK && e != KEYTIER_E_APPROVAL_USED)
        fprintf(stderr, "%s\n", keytier_last_error_detail());
    keytier_ctx_close(ctx);
    r->result = e;
    return NULL;
}

int main(int argc, char **argv)
{
    keytier_approval_op op;
    if (argc != 7 || keytier_approval_op_parse(argv[2], &op) != KEYTIER_OK) {
        fprintf(stderr, "usage: race-consume CONF OP TENANT SCOPE ID N\n");
        return 2;
    }
    int n = atoi(argv[6]);
    if (n < 2 || n > MAX_THREADS)
        return 2;
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)n);
    struct racer r[MAX_THREADS];
    pthread_t t[MAX_THREADS];
    for (int i = 0; i < n; i++) {
        r[i] = (struct racer){argv[1], op,  argv[3],   argv[4],
                              argv[5], &go, KEYTIER_OK};
        if (pthread_create(&t[i], NULL, race, &r[i]) != 0)
            return 1;
    }
    int ok = 0, used = 0, other = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        if (r[i].result == KEYTIER_OK)
            ok++;
        else if (r[i].result == KEYTIER_E_APPROVAL_USED)
            used++;
        else
            other++;
    }
    pthread_barrier_destroy(&go);
    printf("ok=%d used=%d other=%d\n", ok, used, other);
    return 0;
}
