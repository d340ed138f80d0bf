/*
 * token.h - what the token files of p11/ share among themselves (the rest
 * of the library uses kt_lib.h): module.c scans, token.c finds the token a
 * URI names, login.c and session.c give a logged-in session of it, root.c
 * resolves a root key there and wrap.c wraps and unwraps under it.
 */
#ifndef KT_P11_TOKEN_H
#define KT_P11_TOKEN_H

#include <p11-kit/uri.h>

#include "kt_lib.h"

/* ---- module.c --------------------------------------------------------- */

/*
 * Starts a scan of every module that is neither hung nor being scanned
 * already, in parallel, and waits for them at most the call deadline.  A
 * module whose scan is still running then is marked hung: it is not asked
 * again until its late calls return.  Never called with tokens_mu held.
 */
void kt_tokens_scan(keytier_ctx *ctx);
/* The modules that did not answer their last scan (hung past the
 * deadline, or failed to start), as text; false if every module answers. */
bool kt_modules_down(keytier_ctx *ctx, char *out, size_t cap);

/* ---- token.c ---------------------------------------------------------- */

/* Parses a URI, refusing one that carries a PIN (KEYTIER_E_URI). */
KT_NODISCARD keytier_err kt_uri_parse(const char *uri, P11KitUri **out);
/* The single token u (the text uri) names, scanning again once if none
 * matches; KEYTIER_E_UNAVAILABLE when none matches and a module does not
 * answer. */
KT_NODISCARD keytier_err kt_token_match(keytier_ctx *ctx, P11KitUri *u,
                                        const char *uri, struct kt_token **out);

/* ---- login.c ---------------------------------------------------------- */

/* C_Login with the configured PIN unless the token already refused exactly
 * this PIN: then its earlier answer stands and the token is not asked. */
KT_NODISCARD CK_RV kt_login_once(struct kt_token *tok, CK_SESSION_HANDLE s,
                                 kt_secret *pin);

#endif
