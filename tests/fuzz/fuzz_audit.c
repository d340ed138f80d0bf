/* Fuzz target: audit logs given to verify (kt_audit_verify, kt_audit_scan,
 * kt_audit_log_id), which read a file anyone with write access may have
 * edited. Properties: the verdicts agree with each other; an intact log
 * has an Id; a tampered verdict names a line inside the file; the
 * good-record count never exceeds the lines. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "input_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t count_lines(const uint8_t *data, size_t size)
{
    uint64_t n = 0;
    for (size_t i = 0; i < size; i++)
        if (data[i] == '\n')
            n++;
    return n + (size > 0 && data[size - 1] != '\n');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[] = "/tmp/kt-fuzz-audit-XXXXXX";
    fz_write_temp(path, data, size);
    uint64_t lines = count_lines(data, size);
    uint64_t bad = 0, records = 0;
    keytier_err e = kt_audit_verify(path, &bad, &records);
    if (records > lines)
        abort();
    if (e == KEYTIER_E_AUDIT_TAMPERED && (bad < 1 || bad > lines + 1))
        abort();
    kt_audit_scan_result r;
    memset(&r, 0, sizeof r);
    r.at_seq = 1;
    keytier_err s = kt_audit_scan(path, &r);
    /* verify calls a file without records empty; scan finds it intact */
    bool empty = e == KEYTIER_E_AUDIT_EMPTY && s == KEYTIER_OK;
    if ((s != e && !empty) || r.records != records)
        abort();
    if (e == KEYTIER_E_AUDIT_TAMPERED && r.bad_line != bad)
        abort();
    char id[KT_AUDIT_ID_SIZE];
    keytier_err l = kt_audit_log_id(path, id);
    if (e == KEYTIER_OK && l != KEYTIER_OK)
        abort(); /* an intact log has an identity */
    unlink(path);
    return 0;
}
