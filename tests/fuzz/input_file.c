#include "input_file.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

void fz_write_fd(int fd, const void *p, size_t n)
{
    if (fd < 0 || (n > 0 && write(fd, p, n) != (ssize_t)n))
        abort();
}

void fz_write_temp(char *template_path, const void *p, size_t n)
{
    int fd = mkstemp(template_path);
    fz_write_fd(fd, p, n);
    close(fd);
}

void fz_write_file(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    fz_write_fd(fd, p, n);
    close(fd);
}
