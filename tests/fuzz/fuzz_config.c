/* Fuzz target: the module configuration parser (KEYTIER_CONF). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "kt.h"
#include "input_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[] = "/tmp/kt-fuzz-config-XXXXXX";
    fz_write_temp(path, data, size);
    struct kt_config cfg;
    kt_config_defaults(&cfg);
    kt_log_open(KT_LOG_ERROR, "/dev/null");
    CK_RV rv = kt_config_parse_file(&cfg, path);
    if (rv == CKR_OK && (cfg.pin_min_length > cfg.pin_max_length ||
                         cfg.slots < 1 || cfg.pin_kdf_cost < 10))
        abort();
    unlink(path);
    return 0;
}
