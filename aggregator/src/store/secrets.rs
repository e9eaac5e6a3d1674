//! The data directory's secret keys: one for dedupe keys, one for caller pseudonyms.
//! Generated from the OS's random source on first use and kept in `DIR/secret.key` (0600).

use super::StoreError;
use crate::random::{hex, random_bytes};
use std::io::Write;
use std::path::Path;

pub const FILE: &str = "secret.key";

#[derive(Clone)]
pub struct Secrets {
    pub dedupe: [u8; 16],
    pub caller: [u8; 32],
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

/// Decodes `2 * N` hex digits.
pub fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let t = text.trim().as_bytes();
    if t.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in t.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

impl Secrets {
    /// Loads the keys of `dir`, creating them on first use. `caller_override` (from
    /// configuration or the environment) replaces the stored caller key.
    pub fn load_or_create(
        dir: &Path,
        caller_override: Option<[u8; 32]>,
    ) -> Result<Self, StoreError> {
        let path = dir.join(FILE);
        let secrets = match Self::read(&path)? {
            Some(s) => s,
            None => {
                let raw = random_bytes::<48>()
                    .map_err(|e| StoreError::io(Path::new("/dev/urandom"), e))?;
                let mut s = Self {
                    dedupe: [0; 16],
                    caller: [0; 32],
                };
                s.dedupe.copy_from_slice(&raw[..16]);
                s.caller.copy_from_slice(&raw[16..]);
                s.write(&path)?;
                s
            }
        };
        Ok(secrets.with_caller(caller_override))
    }

    /// Loads the keys of an existing store, creating nothing (a query's open).
    pub fn load(dir: &Path, caller_override: Option<[u8; 32]>) -> Result<Self, StoreError> {
        let path = dir.join(FILE);
        match Self::read(&path)? {
            Some(s) => Ok(s.with_caller(caller_override)),
            None => Err(StoreError::Corrupt {
                path: path.display().to_string(),
                what: "missing (the store's keys)".into(),
            }),
        }
    }

    /// The key of the log's frame tags (see [`super::log`]): derived from the dedupe
    /// secret, which never changes for a directory (a caller override does not touch it)
    /// and is copied with the log by `repair`.
    pub fn log_key(&self) -> super::log::LogKey {
        let derived = blake3::derive_key("netwait events.log frame tag v2", &self.dedupe);
        let mut key = [0u8; 16];
        key.copy_from_slice(&derived[..16]);
        key
    }

    fn with_caller(mut self, caller_override: Option<[u8; 32]>) -> Self {
        if let Some(k) = caller_override {
            self.caller = k;
        }
        self
    }

    /// The keys in `path`; `None` when there is no such file.
    fn read(path: &Path) -> Result<Option<Self>, StoreError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(path, e)),
        };
        let mut lines = text.lines();
        let dedupe = lines.next().and_then(unhex::<16>);
        let caller = lines.next().and_then(unhex::<32>);
        match (dedupe, caller) {
            (Some(dedupe), Some(caller)) => Ok(Some(Self { dedupe, caller })),
            _ => Err(StoreError::Corrupt {
                path: path.display().to_string(),
                what: "expected two lines of hex keys".into(),
            }),
        }
    }

    fn write(&self, path: &Path) -> Result<(), StoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| StoreError::io(&tmp, e))?;
        writeln!(f, "{}\n{}", hex(&self.dedupe), hex(&self.caller))
            .and_then(|()| f.sync_all())
            .map_err(|e| StoreError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| StoreError::io(path, e))?;
        super::checkpoint_dir::sync_dir(path.parent().unwrap_or(Path::new(".")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Secrets::load_or_create(dir.path(), None).expect("create");
        let b = Secrets::load_or_create(dir.path(), None).expect("load");
        assert_eq!((a.dedupe, a.caller), (b.dedupe, b.caller));
        assert_ne!(a.caller, [0; 32]);
        let c = Secrets::load_or_create(dir.path(), Some([5; 32])).expect("load");
        assert_eq!((c.dedupe, c.caller), (a.dedupe, [5; 32]));
        assert_eq!(unhex::<2>("0aFf"), Some([10, 255]));
        let loaded = Secrets::load(dir.path(), None).expect("load");
        assert_eq!(loaded.dedupe, a.dedupe);
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(Secrets::load(empty.path(), None).is_err());
        assert_eq!(std::fs::read_dir(empty.path()).expect("list").count(), 0);
        assert_eq!(unhex::<2>("0aF"), None);
        // The log key follows the dedupe secret only.
        assert_eq!(c.log_key(), a.log_key());
        assert_ne!(a.log_key(), a.dedupe);
    }
}
