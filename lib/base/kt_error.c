/* The one error table of libkeytier (keytier.h KEYTIER_ERROR_TABLE) and the
 * per-thread error detail. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kt_base.h"
#include "kt_version.h"

struct kt_error_row {
    keytier_err code;
    const char *name;
    const char *message;
};

#define KT_ERROR_ROW_(n, v, m) {n, #n, m},
static const struct kt_error_row kt_error_rows[] = {
    KEYTIER_ERROR_TABLE(KT_ERROR_ROW_)};
#undef KT_ERROR_ROW_

#define KT_ERROR_DETAIL_MAX 768
static _Thread_local char kt_error_detail[KT_ERROR_DETAIL_MAX];

static const struct kt_error_row *kt_error_find(keytier_err err)
{
    for (size_t i = 0; i < sizeof kt_error_rows / sizeof kt_error_rows[0]; i++)
        if (kt_error_rows[i].code == err)
            return &kt_error_rows[i];
    return NULL;
}

KEYTIER_API const char *keytier_version(void)
{
    return KT_VERSION;
}

KEYTIER_API const char *keytier_strerror(keytier_err err)
{
    const struct kt_error_row *row = kt_error_find(err);
    return row ? row->message : "unknown error";
}

KEYTIER_API const char *keytier_error_name(keytier_err err)
{
    const struct kt_error_row *row = kt_error_find(err);
    return row ? row->name : "KEYTIER_E_UNKNOWN";
}

KEYTIER_API const char *keytier_last_error_detail(void)
{
    return kt_error_detail;
}

void kt_err_clear(void)
{
    kt_error_detail[0] = '\0';
}

void kt_err_restore(const char *saved)
{
    snprintf(kt_error_detail, sizeof kt_error_detail, "%s", saved);
}

keytier_err kt_err(keytier_err err, const char *fmt, ...)
{
    int n = snprintf(kt_error_detail, sizeof kt_error_detail, "%s",
                     keytier_strerror(err));
    if (fmt != NULL && n > 0 && (size_t)n < sizeof kt_error_detail - 2) {
        kt_error_detail[n++] = ':';
        kt_error_detail[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(kt_error_detail + n, sizeof kt_error_detail - (size_t)n, fmt,
                  ap);
        va_end(ap);
    }
    return err;
}

keytier_err kt_err_context(keytier_err err, const char *fmt, ...)
{
    char prev[KT_ERROR_DETAIL_MAX], now[KT_ERROR_DETAIL_MAX];
    snprintf(prev, sizeof prev, "%s", kt_error_detail);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(now, sizeof now, fmt, ap);
    va_end(ap);
    /* Do not repeat the message: "x not found: A (x not found: B)". */
    const char *msg = keytier_strerror(err), *p = prev;
    size_t ml = strlen(msg);
    if (strncmp(p, msg, ml) == 0 && p[ml] == ':' && p[ml + 1] == ' ')
        p += ml + 2;
    if (*p != '\0')
        return kt_err(err, "%s (%s)", now, p);
    return kt_err(err, "%s", now);
}
