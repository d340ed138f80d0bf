/* The PKCS#11 3.0 additions the module and its tests use: interfaces, the
 * 3.0 function list and the prototypes of the functions new in 3.0.
 * p11-kit's pkcs11.h has them from 0.25 on; with an older p11-kit (0.24
 * has 2.40 only) they are declared here, laid out as the OASIS PKCS#11 3.0
 * headers lay them out (ABI: the order of the function list). */
#ifndef KT_PKCS11V3_H
#define KT_PKCS11V3_H

#include <p11-kit/pkcs11.h>

#ifndef CKF_INTERFACE_FORK_SAFE

#define CKF_INTERFACE_FORK_SAFE 0x00000001UL
#define CKF_END_OF_MESSAGE      0x00000001UL

#define CKF_MESSAGE_ENCRYPT 0x00000002UL
#define CKF_MESSAGE_DECRYPT 0x00000004UL
#define CKF_MESSAGE_SIGN    0x00000008UL
#define CKF_MESSAGE_VERIFY  0x00000010UL
#define CKF_MULTI_MESSAGE   0x00000020UL
#define CKF_FIND_OBJECTS    0x00000040UL

#define CKR_OPERATION_CANCEL_FAILED 0x00000202UL

typedef struct CK_INTERFACE {
    CK_CHAR *pInterfaceName;
    CK_VOID_PTR pFunctionList;
    CK_FLAGS flags;
} CK_INTERFACE;
typedef CK_INTERFACE *CK_INTERFACE_PTR;
typedef CK_INTERFACE_PTR *CK_INTERFACE_PTR_PTR;

typedef CK_ULONG CK_GENERATOR_FUNCTION;
#define CKG_NO_GENERATE          0x00000000UL
#define CKG_GENERATE             0x00000001UL
#define CKG_GENERATE_COUNTER     0x00000002UL
#define CKG_GENERATE_RANDOM      0x00000003UL
#define CKG_GENERATE_COUNTER_XOR 0x00000004UL

typedef struct CK_GCM_MESSAGE_PARAMS {
    CK_BYTE_PTR pIv;
    CK_ULONG ulIvLen;
    CK_ULONG ulIvFixedBits;
    CK_GENERATOR_FUNCTION ivGenerator;
    CK_BYTE_PTR pTag;
    CK_ULONG ulTagBits;
} CK_GCM_MESSAGE_PARAMS;

/* The 3.0 functions, in the order of CK_FUNCTION_LIST_3_0. */
#define KT_P11V3_FUNCTIONS(X)                                                  \
    X(C_GetInterfaceList, (CK_INTERFACE_PTR list, CK_ULONG_PTR count))         \
    X(C_GetInterface, (CK_UTF8CHAR_PTR name, CK_VERSION_PTR version,           \
                       CK_INTERFACE_PTR_PTR iface, CK_FLAGS flags))            \
    X(C_LoginUser,                                                             \
      (CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin,            \
       CK_ULONG pin_len, CK_UTF8CHAR_PTR username, CK_ULONG username_len))     \
    X(C_SessionCancel, (CK_SESSION_HANDLE h, CK_FLAGS flags))                  \
    X(C_MessageEncryptInit,                                                    \
      (CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key))      \
    X(C_EncryptMessage,                                                        \
      (CK_SESSION_HANDLE h, CK_VOID_PTR param, CK_ULONG param_len,             \
       CK_BYTE_PTR aad, CK_ULONG aad_len, CK_BYTE_PTR in, CK_ULONG in_len,     \
       CK_BYTE_PTR out, CK_ULONG_PTR out_len))                                 \
    X(C_EncryptMessageBegin,                                                   \
      (CK_SESSION_HANDLE h, CK_VOID_PTR param, CK_ULONG param_len,             \
       CK_BYTE_PTR aad, CK_ULONG aad_len))                                     \
    X(C_EncryptMessageNext,                                                    \
      (CK_SESSION_HANDLE h, CK_VOID_PTR param, CK_ULONG param_len,             \
       CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len, \
       CK_FLAGS flags))                                                        \
    X(C_MessageEncryptFinal, (CK_SESSION_HANDLE h))                            \
    X(C_MessageDecryptInit,                                                    \
      (CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key))      \
    X(C_DecryptMessage,                                                        \
      (CK_SESSION_HANDLE h, CK_VOID_PTR param, CK_ULONG param_len,             \
       CK_BYTE_PTR aad, CK_ULONG aad_len, CK_BYTE_PTR in, CK_ULONG in_len,     \
       CK_BYTE_PTR out, CK_ULONG_PTR out_len))                                 \
    X(C_DecryptMessageBegin,                                                   \
      (CK_SESSION_HANDLE h, CK_VOID_PTR param, CK_ULONG param_len,             \
       CK_BYTE_PTR aad, CK_ULONG aad_len))                                     \
    X(C_DecryptMessageNext,                                                    \
      (CK_SESSION_HANDLE h, CK_VOID_PTR param, CK_ULONG param_len,             \
       CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len, \
       CK_FLAGS flags))                                                        \
    X(C_MessageDecryptFinal, (CK_SESSION_HANDLE h))                            \
    X(C_MessageSignInit,                                                       \
      (CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key))      \
    X(C_SignMessage, (CK_SESSION_HANDLE h, CK_VOID_PTR param,                  \
                      CK_ULONG param_len, CK_BYTE_PTR data, CK_ULONG data_len, \
                      CK_BYTE_PTR sig, CK_ULONG_PTR sig_len))                  \
    X(C_SignMessageBegin,                                                      \
      (CK_SESSION_HANDLE h, CK_VOID_PTR param, CK_ULONG param_len))            \
    X(C_SignMessageNext,                                                       \
      (CK_SESSION_HANDLE h, CK_VOID_PTR param, CK_ULONG param_len,             \
       CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR sig,                   \
       CK_ULONG_PTR sig_len))                                                  \
    X(C_MessageSignFinal, (CK_SESSION_HANDLE h))                               \
    X(C_MessageVerifyInit,                                                     \
      (CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key))      \
    X(C_VerifyMessage, (CK_SESSION_HANDLE h, CK_VOID_PTR param,                \
                        CK_ULONG param_len, CK_BYTE_PTR data,                  \
                        CK_ULONG data_len, CK_BYTE_PTR sig, CK_ULONG sig_len)) \
    X(C_VerifyMessageBegin,                                                    \
      (CK_SESSION_HANDLE h, CK_VOID_PTR param, CK_ULONG param_len))            \
    X(C_VerifyMessageNext,                                                     \
      (CK_SESSION_HANDLE h, CK_VOID_PTR param, CK_ULONG param_len,             \
       CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR sig,                   \
       CK_ULONG sig_len))                                                      \
    X(C_MessageVerifyFinal, (CK_SESSION_HANDLE h))

#define KT_P11V3_PROTO(name, args) CK_RV name args;
KT_P11V3_FUNCTIONS(KT_P11V3_PROTO)
#undef KT_P11V3_PROTO

#define KT_P11V3_MEMBER(name, args) CK_RV(*name) args;
typedef struct CK_FUNCTION_LIST_3_0 {
    CK_VERSION version;
    /* The 2.40 functions, as in CK_FUNCTION_LIST. */
    CK_C_Initialize C_Initialize;
    CK_C_Finalize C_Finalize;
    CK_C_GetInfo C_GetInfo;
    CK_C_GetFunctionList C_GetFunctionList;
    CK_C_GetSlotList C_GetSlotList;
    CK_C_GetSlotInfo C_GetSlotInfo;
    CK_C_GetTokenInfo C_GetTokenInfo;
    CK_C_GetMechanismList C_GetMechanismList;
    CK_C_GetMechanismInfo C_GetMechanismInfo;
    CK_C_InitToken C_InitToken;
    CK_C_InitPIN C_InitPIN;
    CK_C_SetPIN C_SetPIN;
    CK_C_OpenSession C_OpenSession;
    CK_C_CloseSession C_CloseSession;
    CK_C_CloseAllSessions C_CloseAllSessions;
    CK_C_GetSessionInfo C_GetSessionInfo;
    CK_C_GetOperationState C_GetOperationState;
    CK_C_SetOperationState C_SetOperationState;
    CK_C_Login C_Login;
    CK_C_Logout C_Logout;
    CK_C_CreateObject C_CreateObject;
    CK_C_CopyObject C_CopyObject;
    CK_C_DestroyObject C_DestroyObject;
    CK_C_GetObjectSize C_GetObjectSize;
    CK_C_GetAttributeValue C_GetAttributeValue;
    CK_C_SetAttributeValue C_SetAttributeValue;
    CK_C_FindObjectsInit C_FindObjectsInit;
    CK_C_FindObjects C_FindObjects;
    CK_C_FindObjectsFinal C_FindObjectsFinal;
    CK_C_EncryptInit C_EncryptInit;
    CK_C_Encrypt C_Encrypt;
    CK_C_EncryptUpdate C_EncryptUpdate;
    CK_C_EncryptFinal C_EncryptFinal;
    CK_C_DecryptInit C_DecryptInit;
    CK_C_Decrypt C_Decrypt;
    CK_C_DecryptUpdate C_DecryptUpdate;
    CK_C_DecryptFinal C_DecryptFinal;
    CK_C_DigestInit C_DigestInit;
    CK_C_Digest C_Digest;
    CK_C_DigestUpdate C_DigestUpdate;
    CK_C_DigestKey C_DigestKey;
    CK_C_DigestFinal C_DigestFinal;
    CK_C_SignInit C_SignInit;
    CK_C_Sign C_Sign;
    CK_C_SignUpdate C_SignUpdate;
    CK_C_SignFinal C_SignFinal;
    CK_C_SignRecoverInit C_SignRecoverInit;
    CK_C_SignRecover C_SignRecover;
    CK_C_VerifyInit C_VerifyInit;
    CK_C_Verify C_Verify;
    CK_C_VerifyUpdate C_VerifyUpdate;
    CK_C_VerifyFinal C_VerifyFinal;
    CK_C_VerifyRecoverInit C_VerifyRecoverInit;
    CK_C_VerifyRecover C_VerifyRecover;
    CK_C_DigestEncryptUpdate C_DigestEncryptUpdate;
    CK_C_DecryptDigestUpdate C_DecryptDigestUpdate;
    CK_C_SignEncryptUpdate C_SignEncryptUpdate;
    CK_C_DecryptVerifyUpdate C_DecryptVerifyUpdate;
    CK_C_GenerateKey C_GenerateKey;
    CK_C_GenerateKeyPair C_GenerateKeyPair;
    CK_C_WrapKey C_WrapKey;
    CK_C_UnwrapKey C_UnwrapKey;
    CK_C_DeriveKey C_DeriveKey;
    CK_C_SeedRandom C_SeedRandom;
    CK_C_GenerateRandom C_GenerateRandom;
    CK_C_GetFunctionStatus C_GetFunctionStatus;
    CK_C_CancelFunction C_CancelFunction;
    CK_C_WaitForSlotEvent C_WaitForSlotEvent;
    KT_P11V3_FUNCTIONS(KT_P11V3_MEMBER)
} CK_FUNCTION_LIST_3_0;
#undef KT_P11V3_MEMBER
typedef CK_FUNCTION_LIST_3_0 *CK_FUNCTION_LIST_3_0_PTR;
typedef CK_FUNCTION_LIST_3_0_PTR *CK_FUNCTION_LIST_3_0_PTR_PTR;
typedef CK_RV (*CK_C_GetInterfaceList)(CK_INTERFACE_PTR, CK_ULONG_PTR);
typedef CK_RV (*CK_C_GetInterface)(CK_UTF8CHAR_PTR, CK_VERSION_PTR,
                                   CK_INTERFACE_PTR_PTR, CK_FLAGS);

#endif /* CKF_INTERFACE_FORK_SAFE */

/* Mechanism and key type names of PKCS#11 3.0 that p11-kit 0.24's header
 * lacks (each block only where the header has none). */
#ifndef CKM_AES_KEY_WRAP_KWP
#define CKM_AES_KEY_WRAP_KWP 0x210BUL
#endif
#ifndef CKM_SHA3_256
#define CKM_SHA3_256              0x2B0UL
#define CKM_SHA3_256_HMAC         0x2B1UL
#define CKM_SHA3_256_HMAC_GENERAL 0x2B2UL
#define CKM_SHA3_224              0x2B5UL
#define CKM_SHA3_224_HMAC         0x2B6UL
#define CKM_SHA3_224_HMAC_GENERAL 0x2B7UL
#define CKM_SHA3_384              0x2C0UL
#define CKM_SHA3_384_HMAC         0x2C1UL
#define CKM_SHA3_384_HMAC_GENERAL 0x2C2UL
#define CKM_SHA3_512              0x2D0UL
#define CKM_SHA3_512_HMAC         0x2D1UL
#define CKM_SHA3_512_HMAC_GENERAL 0x2D2UL
#endif
#ifndef CKK_SHA3_224_HMAC
#define CKK_SHA3_224_HMAC 0x36UL
#define CKK_SHA3_256_HMAC 0x37UL
#define CKK_SHA3_384_HMAC 0x38UL
#define CKK_SHA3_512_HMAC 0x39UL
#endif
#ifndef CKM_HKDF_DERIVE
#define CKM_HKDF_DERIVE    0x402AUL
#define CKM_HKDF_DATA      0x402BUL
#define CKM_HKDF_KEY_GEN   0x402CUL
#define CKK_HKDF           0x42UL
#define CKF_HKDF_SALT_NULL 0x1UL
#define CKF_HKDF_SALT_DATA 0x2UL
#define CKF_HKDF_SALT_KEY  0x4UL
typedef struct CK_HKDF_PARAMS {
    CK_BBOOL bExtract;
    CK_BBOOL bExpand;
    CK_MECHANISM_TYPE prfHashMechanism;
    CK_ULONG ulSaltType;
    CK_BYTE_PTR pSalt;
    CK_ULONG ulSaltLen;
    CK_OBJECT_HANDLE hSaltKey;
    CK_BYTE_PTR pInfo;
    CK_ULONG ulInfoLen;
} CK_HKDF_PARAMS;
#endif
#ifndef CKK_EC_MONTGOMERY
#define CKK_EC_MONTGOMERY 0x41UL
#endif
#ifndef CKM_EC_MONTGOMERY_KEY_PAIR_GEN
#define CKM_EC_MONTGOMERY_KEY_PAIR_GEN 0x1056UL
#endif
#ifndef CKM_SHA3_256_RSA_PKCS
#define CKM_SHA3_256_RSA_PKCS 0x60UL
#define CKM_SHA3_384_RSA_PKCS 0x61UL
#define CKM_SHA3_512_RSA_PKCS 0x62UL
#define CKM_SHA3_224_RSA_PKCS 0x66UL
#endif
#ifndef CKM_ECDSA_SHA3_224
#define CKM_ECDSA_SHA3_224 0x1047UL
#define CKM_ECDSA_SHA3_256 0x1048UL
#define CKM_ECDSA_SHA3_384 0x1049UL
#define CKM_ECDSA_SHA3_512 0x104AUL
#endif

#endif
