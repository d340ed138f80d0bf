/* Slot and token management (PKCS#11 v2.40 §5.5). */
#include "kt.h"

#include <string.h>

#include "p11str.h"

CK_RV C_GetSlotList(CK_BBOOL token_present, CK_SLOT_ID_PTR list,
                    CK_ULONG_PTR count)
{
    (void)token_present; /* every slot holds a token, initialised or not */
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && count == NULL)
        rv = CKR_ARGUMENTS_BAD;
    if (rv != CKR_OK)
        return kt_trace("C_GetSlotList", rv);
    pthread_mutex_lock(&kt_g.lock);
    /* Tokens created by other processes appear here (a directory read; the
     * known ones are not reopened). */
    if (list == NULL)
        rv = kt_slots_scan();
    if (rv == CKR_OK) {
        if (list == NULL) {
            *count = kt_g.n_slots;
        } else if (*count < kt_g.n_slots) {
            *count = kt_g.n_slots;
            rv = CKR_BUFFER_TOO_SMALL;
        } else {
            for (size_t i = 0; i < kt_g.n_slots; i++)
                list[i] = kt_g.slots[i].id;
            *count = kt_g.n_slots;
        }
    }
    pthread_mutex_unlock(&kt_g.lock);
    return kt_trace("C_GetSlotList", rv);
}

CK_RV C_GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info)
{
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && info == NULL)
        rv = CKR_ARGUMENTS_BAD;
    if (rv != CKR_OK)
        return kt_trace("C_GetSlotInfo", rv);
    pthread_mutex_lock(&kt_g.lock);
    if (kt_slot_token(slot) == NULL) {
        rv = CKR_SLOT_ID_INVALID;
    } else {
        memset(info, 0, sizeof(*info));
        kt_p11str_pad(info->slotDescription, "keytier slot",
                      sizeof(info->slotDescription));
        kt_p11str_pad(info->manufacturerID, "keytier",
                      sizeof(info->manufacturerID));
        info->flags = CKF_TOKEN_PRESENT;
        info->hardwareVersion.minor = 1;
        info->firmwareVersion.minor = 1;
    }
    pthread_mutex_unlock(&kt_g.lock);
    return kt_trace("C_GetSlotInfo", rv);
}

CK_RV C_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && info == NULL)
        rv = CKR_ARGUMENTS_BAD;
    if (rv != CKR_OK)
        return kt_trace("C_GetTokenInfo", rv);
    pthread_mutex_lock(&kt_g.lock);
    struct kt_token *t = kt_slot_token(slot);
    if (t == NULL)
        rv = CKR_SLOT_ID_INVALID;
    pthread_mutex_unlock(&kt_g.lock);
    /* PIN counters may have moved in another process (or the token was
     * re-initialised: this process's sessions on it are then closed, and
     * the new token is described). */
    if (rv == CKR_OK)
        rv = kt_token_sync(t);
    if (rv == CKR_SESSION_CLOSED)
        rv = CKR_OK;
    if (rv == CKR_OK) {
        pthread_mutex_lock(&kt_g.lock);
        kt_token_token_info(t, info);
        pthread_mutex_unlock(&kt_g.lock);
    }
    return kt_trace("C_GetTokenInfo", rv);
}

CK_RV C_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list,
                         CK_ULONG_PTR count)
{
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && count == NULL)
        rv = CKR_ARGUMENTS_BAD;
    if (rv != CKR_OK)
        return kt_trace("C_GetMechanismList", rv);
    pthread_mutex_lock(&kt_g.lock);
    if (kt_slot_token(slot) == NULL)
        rv = CKR_SLOT_ID_INVALID;
    pthread_mutex_unlock(&kt_g.lock);
    if (rv == CKR_OK) {
        size_t n = 0, all = kt_mech_count();
        for (size_t i = 0; i < all; i++)
            n += kt_mech_offered(kt_mech_at(i));
        if (list == NULL) {
            *count = n;
        } else if (*count < n) {
            *count = n;
            rv = CKR_BUFFER_TOO_SMALL;
        } else {
            for (size_t i = 0, j = 0; i < all; i++)
                if (kt_mech_offered(kt_mech_at(i)))
                    list[j++] = kt_mech_at(i)->type;
            *count = n;
        }
    }
    return kt_trace("C_GetMechanismList", rv);
}

CK_RV C_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type,
                         CK_MECHANISM_INFO_PTR info)
{
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && info == NULL)
        rv = CKR_ARGUMENTS_BAD;
    if (rv != CKR_OK)
        return kt_trace("C_GetMechanismInfo", rv);
    pthread_mutex_lock(&kt_g.lock);
    if (kt_slot_token(slot) == NULL)
        rv = CKR_SLOT_ID_INVALID;
    pthread_mutex_unlock(&kt_g.lock);
    if (rv == CKR_OK) {
        const struct kt_mech *m = kt_mech_find(type);
        if (m == NULL)
            rv = CKR_MECHANISM_INVALID;
        else {
            *info = m->info;
            info->flags = kt_mech_flags(m);
        }
    }
    return kt_trace("C_GetMechanismInfo", rv);
}

CK_RV C_InitToken(CK_SLOT_ID slot, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len,
                  CK_UTF8CHAR_PTR label)
{
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && ((pin == NULL && pin_len > 0) || label == NULL))
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK)
        rv = kt_login_check_pin_len(pin_len);
    if (rv != CKR_OK)
        return kt_trace("C_InitToken", rv);
    pthread_mutex_lock(&kt_g.lock);
    struct kt_token *t = kt_slot_token(slot);
    if (t == NULL)
        rv = CKR_SLOT_ID_INVALID;
    else if (t->session_count > 0)
        rv = CKR_SESSION_EXISTS;
    else if (t->busy)
        rv = CKR_FUNCTION_FAILED; /* another thread initialises it */
    if (rv == CKR_OK)
        t->busy = true;
    pthread_mutex_unlock(&kt_g.lock);
    if (rv != CKR_OK)
        return kt_trace("C_InitToken", rv);
    /* The label is blank padded UTF-8 (§3.2); a NUL would cut it short in
     * the store. */
    CK_UTF8CHAR lbl[KT_LABEL_LEN];
    for (size_t i = 0; i < KT_LABEL_LEN; i++)
        lbl[i] = label[i] != 0 ? label[i] : ' ';
    /* The KDF runs with no global lock: `busy` keeps sessions and other
     * initialisations of this process off this token meanwhile, the lock
     * file those of other processes. */
    rv = kt_tokenlock_init_token(t, kt_g.cfg.token_dir, pin, pin_len, lbl);
    pthread_mutex_lock(&kt_g.lock);
    t->busy = false;
    if (rv == CKR_OK)
        rv = kt_slots_add_free();
    pthread_mutex_unlock(&kt_g.lock);
    return kt_trace("C_InitToken", rv);
}

CK_RV C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR slot,
                         CK_VOID_PTR reserved)
{
    (void)flags;
    CK_RV rv = kt_check_init();
    if (rv == CKR_OK && (slot == NULL || reserved != NULL))
        rv = CKR_ARGUMENTS_BAD;
    if (rv == CKR_OK)
        rv = CKR_FUNCTION_NOT_SUPPORTED;
    return kt_trace("C_WaitForSlotEvent", rv);
}
