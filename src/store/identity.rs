//! The store's identity: a random id and the role it was created for, written once into the store
//! directory and never changed. A command that finds the store locked asks the running server's
//! admin API which store it serves and compares the ids, so it never answers from another store.
//!
//! It is a file beside sled's, not a sled key, because the command that needs it is the one that
//! cannot open sled: the lock is held by the server.

use super::StoreError;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// The file in the store directory.
pub const FILE: &str = "dkd-identity.json";

/// Which store this is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Random (UUID v4), unique to this store.
    pub id: String,
    /// The role (`gemeente`, `ib`) of the dkd that created the store or first opened it with
    /// this build.
    pub role: String,
    /// When it was written (unix seconds).
    pub created: i64,
}

impl Identity {
    fn new(role: &str) -> Identity {
        Identity {
            id: uuid::Uuid::new_v4().to_string(),
            role: role.to_owned(),
            created: time::OffsetDateTime::now_utc().unix_timestamp(),
        }
    }
}

/// The identity of the store in `dir`, without opening it (the store may be locked); `None` when
/// it has none (a store no dkd with identities has opened yet).
pub fn read(dir: &Path) -> Result<Option<Identity>, StoreError> {
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::Io(format!("{}: {e}", path.display()))),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        StoreError::Io(format!(
            "{} is not a store identity ({e}); it is written once when the store is created, and must not be edited",
            path.display()
        ))
    })
}

/// The identity of the store in `dir`, created for `role` when it has none. Only the process that
/// holds the store's lock calls this, so two writers cannot race. Written to a temporary file and
/// renamed, so a crash leaves no half identity.
pub(super) fn read_or_create(dir: &Path, role: &str) -> Result<Identity, StoreError> {
    read_or_write(dir, Identity::new(role))
}

/// The identity of the store in `dir`, or `identity` written as it when it has none.
pub(super) fn read_or_write(dir: &Path, identity: Identity) -> Result<Identity, StoreError> {
    if let Some(i) = read(dir)? {
        return Ok(i);
    }
    let path = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp"));
    let io = |e: std::io::Error| StoreError::Io(format!("{}: {e}", path.display()));
    let bytes = serde_json::to_vec(&identity).map_err(|e| StoreError::Io(e.to_string()))?;
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(identity)
}

/// For a temporary store: an identity that lives as long as the store.
pub(super) fn ephemeral(role: &str) -> Identity {
    Identity::new(role)
}

/// The identity kept in the store itself (PostgreSQL: key `identity` of `dkd_meta`), created for
/// `role` by whichever instance comes first; every other instance then reads the same one.
pub(super) fn in_tree(meta: &super::kv::Tree, role: &str) -> Result<Identity, StoreError> {
    in_tree_or(meta, Identity::new(role))
}

/// The key of the identity in `dkd_meta`.
pub(super) const KEY: &[u8] = b"identity";

/// The identity kept in the store, or `identity` written as it when it has none.
pub(super) fn in_tree_or(
    meta: &super::kv::Tree,
    identity: Identity,
) -> Result<Identity, StoreError> {
    let fresh = serde_json::to_vec(&identity).map_err(|e| StoreError::Io(e.to_string()))?;
    let bytes = meta.transaction(|tx| match tx.get(KEY)? {
        Some(v) => Ok(v.to_vec()),
        None => {
            tx.put(KEY, Some(&fresh))?;
            Ok(fresh.clone())
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| StoreError::Io(format!("the store's identity cannot be read: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_once_and_kept() {
        let dir = tempfile::tempdir().expect("dir");
        assert_eq!(read(dir.path()).expect("read"), None);
        let first = read_or_create(dir.path(), "ib").expect("create");
        assert_eq!(first.role, "ib");
        let again = read_or_create(dir.path(), "gemeente").expect("again");
        assert_eq!(again, first, "an existing identity is never replaced");
        assert_eq!(read(dir.path()).expect("read"), Some(first));
    }

    #[test]
    fn an_unreadable_identity_is_an_error_not_a_new_store() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join(FILE), b"{").expect("write");
        let e = read_or_create(dir.path(), "gemeente").expect_err("refused");
        assert!(e.to_string().contains(FILE), "{e}");
    }
}
