/* What the token files of core/ share and nothing else includes: the
 * object index's table operations, the token's file names and integrity
 * key, and the sync under dblock. Lock rules are those of module/README.md;
 * each function says which it expects. */
#ifndef KT_TOKEN_INT_H
#define KT_TOKEN_INT_H

#include <limits.h>

#include "kt.h"

/* token.c */

/* The token's files without ".db": <base>.key, <base>.seq. */
void kt_tok_base(const struct kt_token *t, char out[PATH_MAX]);
/* Reads <serial>.key and derives the record MAC, manifest and .seq keys
 * from it (token lock held for writing, or the token not yet shared). */
KT_NODISCARD CK_RV kt_tok_open_key(struct kt_token *t);

/* objindex.c */

struct kt_obj_shard *kt_tok_shard_of(struct kt_token *t, CK_OBJECT_HANDLE h);
/* Label index of any object (token lock held for writing). */
KT_NODISCARD CK_RV kt_tok_index_add(struct kt_token *t, struct kt_object *o);
void kt_tok_index_del(struct kt_token *t, struct kt_object *o);
/* A session object into its shard (the shard's lock held). */
KT_NODISCARD CK_RV kt_tok_shard_add(struct kt_obj_shard *sh,
                                    struct kt_object *o);
/* Handle map, id map and label index (token lock held for writing;
 * session objects: their shard's lock is taken). */
KT_NODISCARD CK_RV kt_tok_table_add(struct kt_token *t, struct kt_object *o);
/* Out of the tables and freed (token lock held for writing). */
void kt_tok_drop_object(struct kt_token *t, struct kt_object *o);
/* Every token object of this process's table (lock held for writing). */
void kt_tok_drop_token_objects(struct kt_token *t);
/* The session objects of session s (0: of any session), or only the
 * private ones (token lock held for writing). */
void kt_tok_drop_session_objects(struct kt_token *t, CK_SESSION_HANDLE s,
                                 bool private_only);

/* tokensync.c */

/* dblock held: the rows, PIN records and manifest read again if the
 * database changed, checked, and installed. */
KT_NODISCARD CK_RV kt_tok_sync_locked(struct kt_token *t);

#endif
