//! Gossip encryption: AES-GCM under a keyring, Consul's `encrypt` key and `keyring` commands.
//!
//! Every datagram and stream frame of an encrypted pool is `[version 1][12-byte random
//! nonce][ciphertext and 16-byte tag]`, sealed with the primary key; a receiver tries each of
//! its keys, so a key rotation (install everywhere, make it primary everywhere, remove the old
//! one) never drops a message. Anything that opens under no key is dropped and counted.
//!
//! Keys are base64, 16 bytes (AES-128) or 32 bytes (AES-256, what `legate keygen` makes).
//! Consul also takes 24-byte keys; ring has no AES-192, so those are refused with a clear
//! error. The keyring is kept in the data dir (`serf/local.keyring` for the LAN pool,
//! `serf/remote.keyring` for the WAN pool) as Consul keeps it: a JSON array of keys, primary
//! first.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// The first byte of every encrypted message.
const VERSION: u8 = 1;
/// Bytes encryption adds to a message.
pub const OVERHEAD_BYTES: usize = 1 + NONCE_LEN + 16;

struct Key {
    encoded: String,
    aead: LessSafeKey,
}

/// The keys of one pool; the first is the primary.
pub struct Keyring {
    keys: Vec<Key>,
    rng: SystemRandom,
    /// Where the keyring is saved after every change (none: memory only).
    file: Option<PathBuf>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("keys", &self.keys.len()).field("file", &self.file).finish()
    }
}

fn parse_key(encoded: &str) -> Result<Key, String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| format!("invalid gossip key {encoded:?}: not base64 ({e})"))?;
    let algorithm = match raw.len() {
        16 => &AES_128_GCM,
        32 => &AES_256_GCM,
        24 => return Err("24-byte (AES-192) gossip keys are not supported; use 16 or 32 bytes (legate keygen)".into()),
        n => return Err(format!("invalid gossip key: {n} bytes; it must be 16 or 32 bytes, base64-encoded")),
    };
    let unbound = UnboundKey::new(algorithm, &raw).map_err(|_| "invalid gossip key".to_string())?;
    Ok(Key { encoded: base64::engine::general_purpose::STANDARD.encode(&raw), aead: LessSafeKey::new(unbound) })
}

/// A new random 32-byte key, base64 (`legate keygen`).
pub fn generate_key() -> Result<String, String> {
    let mut raw = [0u8; 32];
    SystemRandom::new().fill(&mut raw).map_err(|_| "the system random source failed".to_string())?;
    Ok(base64::engine::general_purpose::STANDARD.encode(raw))
}

impl Keyring {
    /// A keyring of these keys, the first primary.
    pub fn new(keys: &[String]) -> Result<Keyring, String> {
        if keys.is_empty() {
            return Err("a keyring needs at least one key".into());
        }
        let mut ring = Keyring { keys: Vec::new(), rng: SystemRandom::new(), file: None };
        for k in keys {
            let key = parse_key(k)?;
            if !ring.keys.iter().any(|have| have.encoded == key.encoded) {
                ring.keys.push(key);
            }
        }
        Ok(ring)
    }

    /// The keyring saved at `file` if there is one (it wins over `initial`, as in Consul: a
    /// rotated keyring survives restarts), else `initial` (saved there). `None` when neither
    /// exists: the pool is not encrypted.
    pub fn open(file: Option<&Path>, initial: Option<&str>) -> Result<Option<Keyring>, String> {
        let saved = match file {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => {
                    let keys: Vec<String> = serde_json::from_str(&text)
                        .map_err(|e| format!("keyring {}: not a JSON list of keys: {e}", path.display()))?;
                    Some(keys)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(format!("keyring {}: {e}", path.display())),
            },
            None => None,
        };
        let keys = match (saved, initial) {
            (Some(keys), initial) => {
                if initial.is_some() {
                    tracing::info!("using the saved keyring; the encrypt key is ignored (as in Consul)");
                }
                keys
            }
            (None, Some(key)) => vec![key.to_string()],
            (None, None) => return Ok(None),
        };
        let mut ring = Keyring::new(&keys)?;
        ring.file = file.map(Path::to_path_buf);
        ring.save()?;
        Ok(Some(ring))
    }

    /// The keys, primary first.
    pub fn keys(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.encoded.clone()).collect()
    }

    pub fn primary(&self) -> &str {
        &self.keys[0].encoded
    }

    pub fn install(&mut self, key: &str) -> Result<(), String> {
        let key = parse_key(key)?;
        if !self.keys.iter().any(|k| k.encoded == key.encoded) {
            self.keys.push(key);
            self.save()?;
        }
        Ok(())
    }

    /// Makes an installed key the primary.
    pub fn use_key(&mut self, key: &str) -> Result<(), String> {
        let encoded = parse_key(key)?.encoded;
        let at = self.keys.iter().position(|k| k.encoded == encoded).ok_or("Requested key is not in the keyring")?;
        let primary = self.keys.remove(at);
        self.keys.insert(0, primary);
        self.save()
    }

    pub fn remove(&mut self, key: &str) -> Result<(), String> {
        let encoded = parse_key(key)?.encoded;
        if self.keys[0].encoded == encoded {
            return Err("Removing the primary key is not allowed".into());
        }
        let before = self.keys.len();
        self.keys.retain(|k| k.encoded != encoded);
        if self.keys.len() == before {
            return Err("Requested key is not in the keyring".into());
        }
        self.save()
    }

    fn save(&self) -> Result<(), String> {
        let Some(path) = &self.file else { return Ok(()) };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("keyring dir {}: {e}", dir.display()))?;
        }
        let text = serde_json::to_string(&self.keys()).unwrap_or_default();
        // Write beside it and rename, so a crash never leaves half a keyring.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(|e| format!("keyring {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("keyring {}: {e}", path.display()))
    }

    /// Seals `plain` under the primary key.
    pub fn encrypt(&self, plain: &[u8]) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| "the system random source failed".to_string())?;
        let mut out = Vec::with_capacity(plain.len() + OVERHEAD_BYTES);
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        self.keys[0]
            .aead
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut body)
            .map_err(|_| "gossip encryption failed".to_string())?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Opens a sealed message under any key; `None` if none opens it.
    pub fn decrypt(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < OVERHEAD_BYTES || sealed[0] != VERSION {
            return None;
        }
        let nonce: [u8; NONCE_LEN] = sealed[1..1 + NONCE_LEN].try_into().ok()?;
        for key in &self.keys {
            let mut body = sealed[1 + NONCE_LEN..].to_vec();
            if let Ok(plain) = key.aead.open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut body) {
                return Some(plain.to_vec());
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_messages_open_under_any_key_of_the_ring_and_nowhere_else() {
        let (k1, k2) = (generate_key().unwrap(), generate_key().unwrap());
        let a = Keyring::new(std::slice::from_ref(&k1)).unwrap();
        let mut b = Keyring::new(std::slice::from_ref(&k2)).unwrap();
        let sealed = a.encrypt(b"ping").unwrap();
        assert_eq!(sealed.len(), 4 + OVERHEAD_BYTES);
        assert_eq!(a.decrypt(&sealed).as_deref(), Some(&b"ping"[..]));
        assert_eq!(b.decrypt(&sealed), None, "another key does not open it");
        b.install(&k1).unwrap();
        assert_eq!(b.decrypt(&sealed).as_deref(), Some(&b"ping"[..]), "an installed key does");
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(a.decrypt(&tampered), None, "the tag catches tampering");
        assert_eq!(a.decrypt(b"plain gossip"), None);
        assert_ne!(a.encrypt(b"ping").unwrap(), sealed, "a fresh nonce every time");
    }

    #[test]
    fn rotation_rules_and_key_validation() {
        let (k1, k2) = (generate_key().unwrap(), generate_key().unwrap());
        let mut ring = Keyring::new(std::slice::from_ref(&k1)).unwrap();
        assert_eq!(ring.use_key(&k2).unwrap_err(), "Requested key is not in the keyring");
        ring.install(&k2).unwrap();
        ring.install(&k2).unwrap();
        assert_eq!(ring.keys(), [k1.clone(), k2.clone()]);
        assert_eq!(ring.remove(&k1).unwrap_err(), "Removing the primary key is not allowed");
        ring.use_key(&k2).unwrap();
        assert_eq!(ring.primary(), k2);
        ring.remove(&k1).unwrap();
        assert_eq!(ring.keys(), [k2]);
        let sixteen = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
        assert!(Keyring::new(&[sixteen]).is_ok(), "AES-128 keys work");
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 10]);
        assert!(Keyring::new(&[short]).unwrap_err().contains("10 bytes"));
        let aes192 = base64::engine::general_purpose::STANDARD.encode([7u8; 24]);
        assert!(Keyring::new(&[aes192]).unwrap_err().contains("AES-192"));
        assert!(Keyring::new(&["not base64!".into()]).unwrap_err().contains("not base64"));
    }

    #[test]
    fn a_saved_keyring_wins_over_the_encrypt_key_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("serf/local.keyring");
        let (k1, k2) = (generate_key().unwrap(), generate_key().unwrap());
        assert!(Keyring::open(Some(&file), None).unwrap().is_none(), "no key, no keyring: plain gossip");
        let mut ring = Keyring::open(Some(&file), Some(&k1)).unwrap().unwrap();
        ring.install(&k2).unwrap();
        ring.use_key(&k2).unwrap();
        let reopened = Keyring::open(Some(&file), Some(&k1)).unwrap().unwrap();
        assert_eq!(reopened.keys(), [k2, k1]);
        std::fs::write(&file, "garbage").unwrap();
        assert!(Keyring::open(Some(&file), None).unwrap_err().contains("not a JSON list"));
    }
}
