/* Writes the seed corpora of the module fuzz targets (template, mech,
 * unwrap, pin) into DIR/<target>, with the module and the store in this
 * process (tests/fuzz/README):
 *   build/tests/fuzz/fuzz-seeds tests/fuzz/corpus
 * Files of the same names are replaced; wrapped blobs, IVs and PIN
 * records are new each run (random IVs and salts), so only run it when a
 * target's layout or fixed keys change. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "gen.h"

static const char *sub(const char *dir, const char *name)
{
    static char path[4][4096];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, sizeof(path[0]), "%s/%s", dir, name);
    if (mkdir(p, 0755) != 0 && errno != EEXIST) {
        perror(p);
        exit(1);
    }
    return p;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz-seeds DIR (e.g. tests/fuzz/corpus)\n");
        return 2;
    }
    struct fz_env *e = fz_env();
    gen_template(e, sub(argv[1], "template"));
    gen_mech(e, sub(argv[1], "mech"));
    gen_unwrap(e, sub(argv[1], "unwrap"));
    gen_pin(sub(argv[1], "pin"));
    return 0;
}
