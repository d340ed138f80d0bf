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
 * already, in parallel, and waits for each scan at most until one call
 * deadline after it was posted (a scan an earlier caller already waited
 * out is not waited for again).  A module whose scan is still running
 * then is marked hung: it is not asked again until its late calls return.
 * Never called with tokens_mu held.
 */
void kt_tokens_scan(keytier_ctx *ctx);
/* The context's calls still running that nobody needs to wait for: the
 * start and scan of each module marked hung (a vault frozen since it was
 * started).  Token calls left at their deadline are not counted: a close
 * still waits for them a bounded time, as a vault thawed a moment before
 * answers them at once, and their end on a worker while the process
 * exits would race its exit handlers. */
unsigned kt_tokens_hung_calls(keytier_ctx *ctx);
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
