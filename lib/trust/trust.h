/*
 * trust.h - approvals of privileged operations (docs/DESIGN.md §2
 * "Approvals"): what the layers above call to gate an operation, and the
 * signing step inside the approver's token.
 */
#ifndef KT_TRUST_H
#define KT_TRUST_H

#include "kt_lib.h"

/*
 * The gate of a privileged operation, one call at its public entry point:
 * consumes approval_id for (op, tenant, scope) (keytier_approval_consume),
 * or, with approval_id NULL, refuses with KEYTIER_E_APPROVAL_REQUIRED
 * naming the command that makes a request - unless the configuration says
 * `approval.required = no`, when an audit record says the operation ran
 * without approval.  `what` names the operation in errors and records.
 */
KT_NODISCARD keytier_err kt_approval_gate(keytier_ctx *ctx,
                                          keytier_approval_op op,
                                          const char *tenant, const char *scope,
                                          const char *approval_id,
                                          const char *what);

/* Signs a SHA-256 digest with the private key key_uri names, in a session
 * of its token logged in with pin (approval_sign.c). */
KT_NODISCARD keytier_err kt_approval_sign(keytier_ctx *ctx, const char *key_uri,
                                          const char *pin,
                                          const uint8_t digest[32],
                                          uint8_t sig[KT_APPROVAL_SIG_MAX],
                                          size_t *sig_len);

/* The signature check of a grant, from the bytes as stored: the
 * approver's DER SubjectPublicKeyInfo (ECDSA P-256 or RSA >= 2048, else
 * KEYTIER_E_FORMAT) and r's signature (ECDSA r || s, or RSA-PSS SHA-256)
 * over the canonical encoding of r's fields (KEYTIER_E_APPROVAL_INVALID
 * when it does not verify). Whether the key is the one pinned for the
 * approver is kt_grant_verify's check, before this one. */
KT_NODISCARD keytier_err kt_grant_sig_check(const uint8_t *spki, size_t len,
                                            const struct kt_approval_rec *r);

/* The DER SubjectPublicKeyInfo of the P-256 public key whose
 * CKA_EC_POINT (a DER OCTET STRING, or the bare point some tokens give)
 * is v, as an approver's token returned it; KEYTIER_E_TOKEN when v is
 * not an uncompressed P-256 point (approval_keygen.c). */
KT_NODISCARD keytier_err kt_approver_point_spki(const uint8_t *v, size_t len,
                                                uint8_t out[KT_SPKI_MAX],
                                                size_t *out_len);

/* Seconds since the epoch; tests of expiry may move it (internal). */
extern int64_t (*kt_approval_clock)(void);

#endif /* KT_TRUST_H */
