/* Configuration files of "key = value" lines, parsed from a table of keys.
 *
 * Every key is described once (name, type, range or allowed words, default,
 * where its value goes) and every key follows the same rules:
 *   - a value is checked against its key's type and range, or refused;
 *   - a key given twice is refused, naming both lines;
 *   - an unknown key is refused, listing the keys there are;
 *   - "#" starts a comment anywhere on a line; blank lines are skipped.
 * A refusal is one message naming the file, the line, the key and what the
 * value must be. Nothing here knows PKCS#11 or the program that uses it. */
#ifndef KT_CONF_H
#define KT_CONF_H

#include <stdbool.h>
#include <stddef.h>

enum kt_conf_type {
    /* A decimal whole number within [min, max], digits only. */
    KT_CONF_UINT,
    /* KT_CONF_UINT that must also be a power of two. */
    KT_CONF_POW2,
    /* yes | no, stored as a bool. */
    KT_CONF_BOOL,
    /* One of the words of the key's list, stored as its int value. */
    KT_CONF_WORD,
    /* An absolute path of at most max bytes, stored in a char array. */
    KT_CONF_PATH,
};

struct kt_conf_word {
    const char *word;
    int value;
};

struct kt_conf_key {
    const char *name;
    enum kt_conf_type type;
    /* UINT, POW2: the range; PATH: max is the longest path in bytes. */
    unsigned long min, max;
    /* WORD: the allowed words, ended by an entry whose word is NULL. */
    const struct kt_conf_word *words;
    /* The default, written as in the file; NULL: none (the field is left
     * as kt_conf_defaults found it). */
    const char *dflt;
    /* Where the value goes in the caller's structure, and the field's size:
     * UINT and POW2 fields are unsigned integers of 1, 2, 4 or 8 bytes,
     * BOOL a bool, WORD an int-sized enum or int, PATH a char array. */
    size_t offset;
    size_t size;
};

/* Longest line accepted, newline included. */
#define KT_CONF_LINE_MAX 4160

/* Room for one message: the file name, the line, the key and the fix. */
#define KT_CONF_ERR_MAX 6144

/* Sets every key that has a default. Returns false (and a message naming
 * the key) if a default breaks its own key's rules: a table error. */
bool kt_conf_defaults(const struct kt_conf_key *keys, size_t n, void *dst,
                      char *err, size_t err_len);

/* Parses path into dst. lines, when not NULL, has n entries and receives
 * the line each key was set on (0: not in the file), for checks between
 * keys that the caller makes afterwards. Returns false with one message in
 * err on the first problem; dst may then hold some of the file's values. */
bool kt_conf_parse_file(const struct kt_conf_key *keys, size_t n, void *dst,
                        const char *path, unsigned *lines, char *err,
                        size_t err_len);

/* Checks and stores one value as if read from a file (where names the
 * place for the message, e.g. "file:3"). */
bool kt_conf_set(const struct kt_conf_key *key, void *dst, const char *value,
                 const char *where, char *err, size_t err_len);

#endif
