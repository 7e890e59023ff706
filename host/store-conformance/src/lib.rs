//! Dev-only: what every store backend must do, written once as functions over the store
//! traits, so that the SQLite and the PostgreSQL backends are held to the same behaviour
//! (each backend's tests call these on a store of its own). Grows aggregate by aggregate
//! as the PostgreSQL backend does (issue 12).

#![forbid(unsafe_code)]

use tenken_model::Payer;
use tenken_store::{AccessStore, Audience, BlobStore, Role, StoreError, WindowOverride};

/// Tokens (found by secret, revocable), window overrides (replaced per payer and month),
/// notices (per payer and audience: a staff notice never reaches institutions).
pub fn check_access(store: &dyn AccessStore) {
    let (id, secret) = store.create_token(Role::Staff { payer: Payer::Kokuho }, "staff", 5).unwrap();
    let (inst, _) = store.create_token(Role::Institution { institution: "1234567".into() }, "医院", 6).unwrap();
    let info = store.find_token(&secret).unwrap().unwrap();
    assert_eq!((info.id, &info.role, info.label.as_str()), (id, &Role::Staff { payer: Payer::Kokuho }, "staff"));
    assert!(store.find_token("tk_wrong").unwrap().is_none());
    assert!(store.revoke_token(id).unwrap());
    assert!(store.find_token(&secret).unwrap().unwrap().revoked);
    assert!(!store.revoke_token(999_999).unwrap(), "no such token");
    let all = store.list_tokens().unwrap();
    assert_eq!(all.iter().map(|t| t.id).collect::<Vec<_>>(), vec![id, inst]);
    assert_eq!(all[1].role, Role::Institution { institution: "1234567".into() });

    let month = "2026-11".parse().unwrap();
    assert!(store.window(Payer::Ssk, month).unwrap().is_none());
    let w = WindowOverride {
        payer: Payer::Ssk,
        billing_month: month,
        opens_ms: 1,
        closes_ms: 2,
        updated_by: id,
        updated_ms: 3,
    };
    store.set_window(w.clone()).unwrap();
    assert_eq!(store.window(Payer::Ssk, month).unwrap(), Some(w.clone()));
    let later = WindowOverride { closes_ms: 9, updated_ms: 4, ..w };
    store.set_window(later.clone()).unwrap();
    assert_eq!(store.window(Payer::Ssk, month).unwrap(), Some(later), "replaced, not added");
    assert!(store.window(Payer::Kokuho, month).unwrap().is_none(), "per payer");

    store.add_notice(Some(Payer::Ssk), Audience::Institutions, "ssk only", id, 1).unwrap();
    store.add_notice(None, Audience::Institutions, "everyone", id, 2).unwrap();
    let n = store.add_notice(Some(Payer::Ssk), Audience::Staff, "ssk staff only", 0, 3).unwrap();
    assert_eq!((n.payer, n.audience, n.created_by), (Some(Payer::Ssk), Audience::Staff, 0));
    assert_eq!(store.notices(Some(Payer::Kokuho), Audience::Institutions, 10).unwrap().len(), 1);
    let ssk = store.notices(Some(Payer::Ssk), Audience::Institutions, 10).unwrap();
    assert_eq!(
        ssk.iter().map(|n| n.message.as_str()).collect::<Vec<_>>(),
        vec!["everyone", "ssk only"],
        "newest first"
    );
    assert_eq!(store.notices(Some(Payer::Ssk), Audience::Institutions, 1).unwrap().len(), 1, "bounded");
    // Issue 10, defect 5: a staff notice never reaches institutions.
    let staff = store.notices(Some(Payer::Ssk), Audience::Staff, 10).unwrap();
    assert_eq!(staff.iter().map(|n| n.message.as_str()).collect::<Vec<_>>(), vec!["ssk staff only"]);
}

/// Content addressing: the same bytes give the same digest and are stored once; what comes
/// back is what went in; an unknown digest is an error, never empty bytes.
pub fn check_blobs(store: &dyn BlobStore) {
    let claim = "IR,1,13,1,1234567,,テスト医院,202611,00,\r\n".as_bytes();
    let d = store.put(claim).unwrap();
    assert_eq!(d, tenken_store::digest(claim));
    assert_eq!(store.put(claim).unwrap(), d, "the same bytes, the same digest");
    assert_eq!(store.get(&d).unwrap(), claim);
    let empty = store.put(b"").unwrap();
    assert_eq!(store.get(&empty).unwrap(), b"");
    let missing = tenken_store::digest(b"never stored");
    assert!(matches!(store.get(&missing), Err(StoreError::Blob(_)) | Err(StoreError::Io(_))));
}
