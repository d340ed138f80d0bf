/* The fuzz input written where the code under test reads it: a new
 * temporary file, a named file, or a descriptor. Each aborts on a failed
 * write (the run is then not about the input). A source of every target
 * that needs it (meson.build, fuzz_targets); not a target itself. */
#ifndef KT_FUZZ_INPUT_FILE_H
#define KT_FUZZ_INPUT_FILE_H

#include <stddef.h>

/* Writes n bytes of p to fd and leaves it open (aborts if fd < 0). */
void fz_write_fd(int fd, const void *p, size_t n);

/* A new file from the mkstemp template (its XXXXXX replaced in place)
 * holding the n bytes of p, closed. */
void fz_write_temp(char *template_path, const void *p, size_t n);

/* path created (0600) or truncated, holding the n bytes of p, closed. */
void fz_write_file(const char *path, const void *p, size_t n);

#endif
