/* Configuration files of "key = value" lines, parsed from a table of keys.
 *
 * Every key is described once (name, type, range or allowed words, default,
 * where its value goes, how often it may appear) and every key follows the
 * same rules:
 *   - a value is checked against its key's type and range, or refused;
 *   - a key given twice is refused, naming both lines, unless the table
 *     marks it a list key (KT_CONF_LIST): then each line adds one value;
 *   - an unknown key is refused, listing the keys there are;
 *   - "#" starts a comment (anywhere on a line, or with
 *     comment_after_blank only at its start or after a blank); blank lines
 *     are skipped.
 * A name holding one "*" is a family of keys ("pin.*", "workload.*.shape"):
 * the "*" stands for a non-empty part, each full name is a key of its own
 * for the repeat rule, and the key's record function finds or makes the
 * record the part names, which the key's offset is then relative to.
 * A refusal is one message naming the file, the line, the key and what the
 * value must be. Nothing here knows PKCS#11 or the program that uses it. */
#ifndef KT_CONF_H
#define KT_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

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
    /* A text of 1 to max bytes, stored as a malloc'ed copy in a char *
     * field (the caller frees it; a value already there is freed). */
    KT_CONF_STR,
    /* A non-empty value checked and stored by the key's set function. */
    KT_CONF_CUSTOM,
};

/* How often a key may appear in one file. */
enum kt_conf_repeat {
    /* Once: a second line is refused, naming both lines. */
    KT_CONF_ONCE = 0,
    /* Any number of times: each line adds one value (the set function
     * keeps them and refuses one too many). */
    KT_CONF_LIST,
};

enum kt_conf_rc {
    KT_CONF_OK = 0,
    /* the file breaks a rule; the message says which and how to fix it */
    KT_CONF_INVALID,
    /* out of memory */
    KT_CONF_NOMEM,
};

struct kt_conf_word {
    const char *word;
    int value;
};

struct kt_conf_key {
    const char *name;
    enum kt_conf_type type;
    /* UINT, POW2: the range; PATH, STR: max is the longest value in
     * bytes. */
    unsigned long min, max;
    /* WORD: the allowed words, ended by an entry whose word is NULL. */
    const struct kt_conf_word *words;
    /* The default, written as in the file; NULL: none (the field is left
     * as kt_conf_defaults found it). Keys whose name holds "*" have none. */
    const char *dflt;
    /* Where the value goes in the caller's structure (or in the record of
     * a "*" key), and the field's size: UINT and POW2 fields are unsigned
     * integers of 1, 2, 4 or 8 bytes, BOOL a bool, WORD an int-sized enum
     * or int, PATH a char array, STR a char *; CUSTOM: what set expects. */
    size_t offset;
    size_t size;
    enum kt_conf_repeat repeat;
    /* Keys whose name holds "*": the record the part names, found or made
     * in dst, or NULL with the reason in why (e.g. too many). */
    void *(*record)(void *dst, const char *part, char *why, size_t why_len);
    /* CUSTOM: checks value and stores it at field (part: the "*" part, or
     * NULL). On a refusal why says what the value must be; it never quotes
     * the value, which may be a secret. */
    enum kt_conf_rc (*set)(void *field, const char *part, const char *value,
                           char *why, size_t why_len);
};

/* A kind of file: its keys and its comment rule. */
struct kt_conf_file {
    const struct kt_conf_key *keys;
    size_t n;
    /* "#" starts a comment only at the start of a line or after a blank,
     * so that a value may hold "#" ("store = /p#q"). */
    bool comment_after_blank;
    /* Lines may hold secrets: a line that is not a setting is not quoted in
     * the message. The line buffer is wiped either way. */
    bool secret_lines;
};

/* Longest line accepted, newline included. */
#define KT_CONF_LINE_MAX 4160

/* Room for one message: the file name, the line, the key and the fix. */
#define KT_CONF_ERR_MAX 6144

/* Sets every key that has a default. Returns false (and a message naming
 * the key) if a default breaks its own key's rules: a table error. */
bool kt_conf_defaults(const struct kt_conf_key *keys, size_t n, void *dst,
                      char *err, size_t err_len);

/* Reads fp (named name in messages) into dst by file's keys and rules.
 * lines, when not NULL, has file->n entries and receives the line each key
 * was first set on (0: not in the file), for checks between keys that the
 * caller makes afterwards. Stops at the first problem with one message in
 * err; dst may then hold some of the file's values. */
enum kt_conf_rc kt_conf_read(const struct kt_conf_file *file, void *dst,
                             FILE *fp, const char *name, unsigned *lines,
                             char *err, size_t err_len);

/* Opens path and reads it with kt_conf_read, "#" starting a comment
 * anywhere. Returns false with one message in err on the first problem. */
bool kt_conf_parse_file(const struct kt_conf_key *keys, size_t n, void *dst,
                        const char *path, unsigned *lines, char *err,
                        size_t err_len);

/* Checks and stores one value as if read from a file (where names the
 * place for the message, e.g. "file:3"). Not for keys whose name holds
 * "*". */
bool kt_conf_set(const struct kt_conf_key *key, void *dst, const char *value,
                 const char *where, char *err, size_t err_len);

#endif
