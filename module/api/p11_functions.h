/* The PKCS#11 v2.40 entry points in CK_FUNCTION_LIST order. Both
 * CK_FUNCTION_LIST (p11_general.c) and CK_FUNCTION_LIST_3_0 (p11_v3.c) begin
 * with exactly these members, so they are listed once here and an entry added
 * to one list cannot go missing from, or shift, the other. The lists differ
 * only in what C_GetInfo reports (cryptokiVersion 2.40 or 3.0), so that
 * member is the argument. */
#ifndef KT_P11_FUNCTIONS_H
#define KT_P11_FUNCTIONS_H

/* clang-format off */
#define KT_P11_FUNCTIONS_2_40(get_info)                                       \
    C_Initialize, C_Finalize, get_info, C_GetFunctionList,                    \
    C_GetSlotList, C_GetSlotInfo, C_GetTokenInfo, C_GetMechanismList,         \
    C_GetMechanismInfo, C_InitToken, C_InitPIN, C_SetPIN, C_OpenSession,      \
    C_CloseSession, C_CloseAllSessions, C_GetSessionInfo,                     \
    C_GetOperationState, C_SetOperationState, C_Login, C_Logout,              \
    C_CreateObject, C_CopyObject, C_DestroyObject, C_GetObjectSize,           \
    C_GetAttributeValue, C_SetAttributeValue, C_FindObjectsInit,             \
    C_FindObjects, C_FindObjectsFinal, C_EncryptInit, C_Encrypt,              \
    C_EncryptUpdate, C_EncryptFinal, C_DecryptInit, C_Decrypt,                \
    C_DecryptUpdate, C_DecryptFinal, C_DigestInit, C_Digest,                  \
    C_DigestUpdate, C_DigestKey, C_DigestFinal, C_SignInit, C_Sign,           \
    C_SignUpdate, C_SignFinal, C_SignRecoverInit, C_SignRecover,              \
    C_VerifyInit, C_Verify, C_VerifyUpdate, C_VerifyFinal,                    \
    C_VerifyRecoverInit, C_VerifyRecover, C_DigestEncryptUpdate,              \
    C_DecryptDigestUpdate, C_SignEncryptUpdate, C_DecryptVerifyUpdate,        \
    C_GenerateKey, C_GenerateKeyPair, C_WrapKey, C_UnwrapKey, C_DeriveKey,    \
    C_SeedRandom, C_GenerateRandom, C_GetFunctionStatus, C_CancelFunction,    \
    C_WaitForSlotEvent
/* clang-format on */

#endif
