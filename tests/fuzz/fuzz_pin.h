/* What the pin fuzz target and its seed generator share: the token's fixed
 * keys and names, so the seeds' records authenticate and open. */
#ifndef KT_FUZZ_PIN_H
#define KT_FUZZ_PIN_H

#include "kt.h"

/* 16 characters, as KT_SERIAL_LEN */
#define FZ_SERIAL "fuzz0serial00001"
#define FZ_LABEL  "fuzz token                      "
#define FZ_EPOCH  "00112233445566778899aabbccddeeff"
/* The integrity key (<serial>.key) and the master key. */
#define FZ_IK_BYTE 0x42
#define FZ_MK_BYTE 0x5a

/* Sections of the input (the first byte, modulo FZ_SECTIONS). */
enum {
    FZ_SEC_DB,   /* PIN records, object rows, deletions, manifest */
    FZ_SEC_META, /* the meta table: format, label, serial, epoch */
    FZ_SEC_SEQ,  /* <serial>.seq */
    FZ_SEC_KEY,  /* <serial>.key */
    FZ_SECTIONS
};

/* Typed SQLite values (a u8 tag, modulo 5). */
enum { FZ_NULL, FZ_INT, FZ_BLOB, FZ_TEXT, FZ_REAL };

#endif
