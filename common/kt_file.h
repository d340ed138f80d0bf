/* Files that hold state or secrets: created owner-only whatever the umask,
 * and configuration or PIN files checked before they are believed. */
#ifndef KT_COMMON_FILE_H
#define KT_COMMON_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Room for one message naming the file, the problem and the fix. */
#define KT_FILE_ERR_MAX 512

/* Opens path for appending, creating it 0600 if it does not exist; an
 * existing file that group or others may read or write is made 0600 (we
 * must own it). A symbolic link is refused. Returns the descriptor, or -1
 * with errno set. */
int kt_file_open_append(const char *path);

/* Makes a descriptor of a file we just created owner-only (0600), whatever
 * the umask left. Returns false with errno set. */
bool kt_file_private(int fd);

/* Creates the directory path 0700 if it does not exist (its parents must);
 * a directory we create is made 0700 whatever the umask. Returns false with
 * errno set. */
bool kt_dir_create_private(const char *path);

/* How much a file read for its settings must be protected. */
enum kt_file_trust {
    /* a configuration: nobody but its owner (this user or root) may write
     * it, since it names the modules loaded and the files believed */
    KT_FILE_CONFIG,
    /* a file holding a secret (a PIN, or a configuration holding one):
     * nobody but its owner may read or write it */
    KT_FILE_SECRET,
};

/* Opens path for reading and checks that it is a regular file, owned by
 * this user or root, that nobody else may change (KT_FILE_CONFIG) or read
 * (KT_FILE_SECRET). what names the file in the message ("config",
 * "PIN file"). Returns the descriptor, or -1 with one message in err
 * naming the file, what is wrong and the fix. */
int kt_file_open_trusted(const char *path, enum kt_file_trust trust,
                         const char *what, char *err, size_t err_len);

/* The same checks on a descriptor already open (its mode and owner as
 * fstat gives them). */
bool kt_file_check_trusted(int fd, const char *path, enum kt_file_trust trust,
                           const char *what, char *err, size_t err_len);

#endif
