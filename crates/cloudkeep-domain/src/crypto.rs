//! Envelope encryption of credentials.
//!
//! Each organisation has a data key (AES-256-GCM). Credentials are sealed
//! under it with the organisation and connection ids as associated data, so
//! a blob copied to another row or organisation does not open. The data key
//! is stored only wrapped by a master key from a `KeyProvider`, with the
//! organisation id as associated data. The `local` provider keeps master
//! keys in a file created with mode 0600.

use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{ConnectionId, OrgId, SecretString};

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Wrong key, wrong associated data, or a tampered blob.
    #[error(
        "decryption failed: the data was encrypted under another key or for another record, or was altered"
    )]
    Decrypt,
    #[error("encryption failed")]
    Encrypt,
    #[error("the master key '{0}' is not in the key file; was the key file replaced?")]
    UnknownMasterKey(String),
    #[error("key file {path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },
    #[error("key file {path} is readable by others (mode {mode:o}); run chmod 600 on it")]
    InsecurePermissions { path: PathBuf, mode: u32 },
}

/// A 256-bit key, zeroed on drop.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; KEY_LEN]>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

fn seal_with(key: &[u8; KEY_LEN], plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| CryptoError::Encrypt)?;
    let nonce: [u8; NONCE_LEN] = random_bytes();
    let mut out = nonce.to_vec();
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Encrypt)?;
    out.extend(ct);
    Ok(out)
}

fn open_with(
    key: &[u8; KEY_LEN],
    blob: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if blob.len() < NONCE_LEN + 16 {
        return Err(CryptoError::Decrypt);
    }
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| CryptoError::Decrypt)?;
    let (nonce, ct) = blob.split_at(NONCE_LEN);
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Decrypt)
}

impl DataKey {
    pub fn generate() -> Self {
        DataKey(Zeroizing::new(random_bytes()))
    }

    /// Encrypts a credential for one connection of one organisation.
    pub fn seal_credential(
        &self,
        org: OrgId,
        connection: ConnectionId,
        secret: &SecretString,
    ) -> Result<Vec<u8>, CryptoError> {
        seal_with(
            &self.0,
            secret.expose().as_bytes(),
            &credential_aad(org, connection),
        )
    }

    pub fn open_credential(
        &self,
        org: OrgId,
        connection: ConnectionId,
        blob: &[u8],
    ) -> Result<SecretString, CryptoError> {
        let plain = open_with(&self.0, blob, &credential_aad(org, connection))?;
        let text = std::str::from_utf8(&plain).map_err(|_| CryptoError::Decrypt)?;
        Ok(SecretString::new(text))
    }
}

impl DataKey {
    /// Encrypts a webhook's signing secret for one webhook of one
    /// organisation (its own associated data: a credential's blob does not
    /// open as a webhook's, nor the reverse).
    pub fn seal_webhook_secret(
        &self,
        org: OrgId,
        webhook: uuid::Uuid,
        secret: &SecretString,
    ) -> Result<Vec<u8>, CryptoError> {
        seal_with(
            &self.0,
            secret.expose().as_bytes(),
            &webhook_aad(org, webhook),
        )
    }

    pub fn open_webhook_secret(
        &self,
        org: OrgId,
        webhook: uuid::Uuid,
        blob: &[u8],
    ) -> Result<SecretString, CryptoError> {
        let plain = open_with(&self.0, blob, &webhook_aad(org, webhook))?;
        let text = std::str::from_utf8(&plain).map_err(|_| CryptoError::Decrypt)?;
        Ok(SecretString::new(text))
    }
}

fn webhook_aad(org: OrgId, webhook: uuid::Uuid) -> Vec<u8> {
    format!("cloudkeep/webhook-secret/v1/{org}/{webhook}").into_bytes()
}

fn credential_aad(org: OrgId, connection: ConnectionId) -> Vec<u8> {
    format!("cloudkeep/credential/v1/{org}/{connection}").into_bytes()
}

fn data_key_aad(org: OrgId) -> Vec<u8> {
    format!("cloudkeep/data-key/v1/{org}").into_bytes()
}

/// A data key as stored: wrapped, with the id of the master key that wrapped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub master_key_id: String,
    pub blob: Vec<u8>,
}

/// Where master keys live (a local file; later a cloud KMS).
/// The keys that seal the audit chain: each event's hash is an
/// HMAC-SHA256 under one of them, so someone who can write the database
/// but does not hold the key cannot rewrite the chain consistently. Kept
/// apart from the database (the `local` provider: a key file of its own)
/// and rotated by adding a key in front; old keys are kept, since old
/// events stay sealed under them.
pub trait ChainKeys: Send + Sync + std::fmt::Debug {
    /// The key new events are sealed with.
    fn current_chain_key(&self) -> String;
    /// HMAC-SHA256 of `message` under the key `id`, in hex; `None` when
    /// this installation does not hold that key.
    fn seal(&self, id: &str, message: &[u8]) -> Option<String>;
}

impl ChainKeys for LocalKeyFile {
    fn current_chain_key(&self) -> String {
        self.keys[0].id.clone()
    }

    fn seal(&self, id: &str, message: &[u8]) -> Option<String> {
        use hmac::Mac;
        let key = self.key(id).ok()?;
        let mut mac = <hmac::Hmac<Sha256> as Mac>::new_from_slice(&key.key[..]).ok()?;
        mac.update(message);
        Some(hex::encode(mac.finalize().into_bytes()))
    }
}

pub trait KeyProvider: Send + Sync {
    /// The master key new wraps use.
    fn current_key_id(&self) -> String;
    fn wrap(&self, org: OrgId, key: &DataKey) -> Result<WrappedKey, CryptoError>;
    fn unwrap(&self, org: OrgId, wrapped: &WrappedKey) -> Result<DataKey, CryptoError>;
}

struct MasterKey {
    id: String,
    key: Zeroizing<[u8; KEY_LEN]>,
}

/// Master keys in a local file, one `id base64key` a line, the current key
/// first. Rotation adds a key in front and later drops the old ones, so an
/// interrupted rotation leaves every wrapped key openable.
pub struct LocalKeyFile {
    path: PathBuf,
    keys: Vec<MasterKey>,
}

impl std::fmt::Debug for LocalKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKeyFile")
            .field("path", &self.path)
            .field("keys", &self.keys.len())
            .finish()
    }
}

fn key_id(key: &[u8; KEY_LEN]) -> String {
    // A fingerprint, not the key: eight bytes of its SHA-256.
    hex::encode(&Sha256::digest(key)[..8])
}

impl LocalKeyFile {
    /// Opens the key file, creating it (mode 0600) with a new key if absent.
    pub fn open_or_create(path: &Path) -> Result<Self, CryptoError> {
        let err = |reason: String| CryptoError::KeyFile {
            path: path.to_path_buf(),
            reason,
        };
        if !path.exists() {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| err(format!("cannot create its folder: {e}")))?;
            }
            let key = Zeroizing::new(random_bytes::<KEY_LEN>());
            let file = LocalKeyFile {
                path: path.to_path_buf(),
                keys: vec![MasterKey {
                    id: key_id(&key),
                    key,
                }],
            };
            file.write()?;
            return Ok(file);
        }
        check_permissions(path)?;
        let text = Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?,
        );
        let mut keys = Vec::new();
        for (n, line) in text
            .lines()
            .map(str::trim)
            .enumerate()
            .filter(|(_, l)| !l.is_empty())
        {
            let (id, b64) = line
                .split_once(' ')
                .ok_or_else(|| err(format!("line {} is not 'ID KEY'", n + 1)))?;
            let raw = Zeroizing::new(
                STANDARD
                    .decode(b64)
                    .map_err(|_| err(format!("line {} is not base64", n + 1)))?,
            );
            let key: [u8; KEY_LEN] = raw
                .as_slice()
                .try_into()
                .map_err(|_| err(format!("line {}: a key is 32 bytes", n + 1)))?;
            let key = Zeroizing::new(key);
            if key_id(&key) != id {
                return Err(err(format!(
                    "line {}: the key does not match its id",
                    n + 1
                )));
            }
            keys.push(MasterKey {
                id: id.to_string(),
                key,
            });
        }
        if keys.is_empty() {
            return Err(err("it holds no key".into()));
        }
        Ok(LocalKeyFile {
            path: path.to_path_buf(),
            keys,
        })
    }

    /// Ids of the keys in the file, the current one first.
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.id.clone()).collect()
    }

    /// Adds a new current key (older keys stay, to unwrap until re-wrapped).
    pub fn begin_rotation(&mut self) -> Result<String, CryptoError> {
        let key = Zeroizing::new(random_bytes::<KEY_LEN>());
        let id = key_id(&key);
        self.keys.insert(
            0,
            MasterKey {
                id: id.clone(),
                key,
            },
        );
        self.write()?;
        Ok(id)
    }

    /// Drops every key but the current one; call once nothing is wrapped by them.
    pub fn retire_old_keys(&mut self) -> Result<(), CryptoError> {
        self.keys.truncate(1);
        self.write()
    }

    /// Writes the file atomically with mode 0600.
    fn write(&self) -> Result<(), CryptoError> {
        let err = |reason: String| CryptoError::KeyFile {
            path: self.path.clone(),
            reason,
        };
        let tmp = self.path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options
            .open(&tmp)
            .map_err(|e| err(format!("cannot create it: {e}")))?;
        let mut text = Zeroizing::new(String::new());
        for k in &self.keys {
            text.push_str(&format!("{} {}\n", k.id, STANDARD.encode(*k.key)));
        }
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| err(format!("cannot write it: {e}")))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| err(format!("cannot replace it: {e}")))
    }

    fn key(&self, id: &str) -> Result<&MasterKey, CryptoError> {
        self.keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| CryptoError::UnknownMasterKey(id.to_string()))
    }
}

#[cfg(unix)]
fn check_permissions(path: &Path) -> Result<(), CryptoError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| CryptoError::KeyFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(CryptoError::InsecurePermissions {
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_: &Path) -> Result<(), CryptoError> {
    Ok(())
}

impl KeyProvider for LocalKeyFile {
    fn current_key_id(&self) -> String {
        self.keys[0].id.clone()
    }

    fn wrap(&self, org: OrgId, key: &DataKey) -> Result<WrappedKey, CryptoError> {
        let master = &self.keys[0];
        Ok(WrappedKey {
            master_key_id: master.id.clone(),
            blob: seal_with(&master.key, &*key.0, &data_key_aad(org))?,
        })
    }

    fn unwrap(&self, org: OrgId, wrapped: &WrappedKey) -> Result<DataKey, CryptoError> {
        let master = self.key(&wrapped.master_key_id)?;
        let plain = open_with(&master.key, &wrapped.blob, &data_key_aad(org))?;
        let key: [u8; KEY_LEN] = plain
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Decrypt)?;
        Ok(DataKey(Zeroizing::new(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_open_only_where_they_were_sealed() {
        let key = DataKey::generate();
        let (org, conn) = (OrgId::new(), ConnectionId::new());
        let secret = SecretString::new("s3cr3t-value");
        let blob = key.seal_credential(org, conn, &secret).expect("seal");
        assert!(!blob.windows(12).any(|w| w == b"s3cr3t-value"));
        assert_eq!(
            key.open_credential(org, conn, &blob)
                .expect("open")
                .expose(),
            "s3cr3t-value"
        );
        assert!(matches!(
            key.open_credential(org, ConnectionId::new(), &blob),
            Err(CryptoError::Decrypt)
        ));
        assert!(matches!(
            key.open_credential(OrgId::new(), conn, &blob),
            Err(CryptoError::Decrypt)
        ));
        assert!(matches!(
            DataKey::generate().open_credential(org, conn, &blob),
            Err(CryptoError::Decrypt)
        ));
    }

    #[test]
    fn key_file_is_private_and_rotates() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("keys/master.key");
        let mut file = LocalKeyFile::open_or_create(&path).expect("create");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
                0o600
            );
        }
        let org = OrgId::new();
        let dk = DataKey::generate();
        let wrapped = file.wrap(org, &dk).expect("wrap");
        assert!(
            file.unwrap(OrgId::new(), &wrapped).is_err(),
            "bound to its organisation"
        );
        let old_id = file.current_key_id();
        let new_id = file.begin_rotation().expect("rotate");
        assert_ne!(old_id, new_id);
        let reopened = LocalKeyFile::open_or_create(&path).expect("reopen");
        assert_eq!(reopened.key_ids(), vec![new_id.clone(), old_id.clone()]);
        let unwrapped = reopened.unwrap(org, &wrapped).expect("old key still opens");
        let rewrapped = reopened.wrap(org, &unwrapped).expect("rewrap");
        assert_eq!(rewrapped.master_key_id, new_id);
        file.retire_old_keys().expect("retire");
        let after = LocalKeyFile::open_or_create(&path).expect("reopen");
        assert!(matches!(
            after.unwrap(org, &wrapped),
            Err(CryptoError::UnknownMasterKey(_))
        ));
        assert!(after.unwrap(org, &rewrapped).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            assert!(matches!(
                LocalKeyFile::open_or_create(&path),
                Err(CryptoError::InsecurePermissions { .. })
            ));
        }
    }
}
