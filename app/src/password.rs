//! Argon2id password hashing, random tokens and generated passwords.

use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::sync::{Arc, Mutex};

/// Hashing or randomness failed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The operating system's random source failed.
    #[error("the system random number generator failed: {0}")]
    Random(String),
    /// Argon2 refused the input.
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

fn argon2() -> Argon2<'static> {
    // OWASP's first recommendation for Argon2id: 19 MiB, 2 passes, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// `len` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], PasswordError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| PasswordError::Random(e.to_string()))?;
    Ok(bytes)
}

/// A random token of 32 bytes as 64 lower-case hex digits.
pub fn random_token() -> Result<String, PasswordError> {
    Ok(hex(&random_bytes::<32>()?))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A generated password: 24 letters and digits (about 143 bits).
pub fn generate_password() -> Result<String, PasswordError> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789abcdefgh";
    // 64 symbols: each random byte's low 6 bits pick one without bias.
    let bytes = random_bytes::<24>()?;
    Ok(bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 63)]))
        .collect())
}

/// The Argon2id hash of `password` in PHC string format.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()?)
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `hash`. An unreadable hash never matches.
#[cfg(test)]
pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::PasswordVerifier;
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Argon2id work areas of [`MEMORY_BLOCKS`] KiB each, one per password check that may run at
/// once: at most that many checks hash at the same time, each in a work area allocated once
/// and reused, so a login storm uses a fixed amount of memory (the slots times 19 MiB).
pub struct Verifier {
    idle: Mutex<(Vec<Vec<Block>>, usize)>,
    slots: usize,
}

/// The memory of one verification, in 1 KiB blocks: the `m` of our hashes (19 MiB).
pub const MEMORY_BLOCKS: usize = 19 * 1024;

/// Every verification slot is taken: the login is answered at once, without hashing.
#[derive(Debug, thiserror::Error)]
#[error("every password check slot is busy")]
pub struct Busy;

/// The right to run one password check, with its work area; given back when dropped.
pub struct Slot {
    area: Vec<Block>,
    verifier: Arc<Verifier>,
}

impl Verifier {
    /// A verifier running at most `slots` (at least 1) checks at once.
    pub fn new(slots: usize) -> Arc<Verifier> {
        Arc::new(Verifier {
            idle: Mutex::new((Vec::new(), 0)),
            slots: slots.max(1),
        })
    }

    /// How many checks may run at once.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// A free slot, or [`Busy`] at once when `slots` checks are running.
    pub fn slot(self: &Arc<Self>) -> Result<Slot, Busy> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let area = match idle.0.pop() {
            Some(area) => area,
            None if idle.1 < self.slots => {
                idle.1 += 1;
                vec![Block::default(); MEMORY_BLOCKS]
            }
            None => return Err(Busy),
        };
        Ok(Slot {
            area,
            verifier: Arc::clone(self),
        })
    }
}

impl Slot {
    /// Whether `password` matches the PHC string `hash`, checked on the blocking pool in this
    /// slot's work area.
    pub async fn verify(mut self, password: String, hash: String) -> bool {
        tokio::task::spawn_blocking(move || verify_in(&password, &hash, &mut self.area))
            .await
            .unwrap_or(false)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let area = std::mem::take(&mut self.area);
        let mut idle = self.verifier.idle.lock().unwrap_or_else(|e| e.into_inner());
        if area.len() >= MEMORY_BLOCKS {
            idle.0.push(area);
        } else {
            // The area was lost (a panic while hashing): a new one may be made in its place.
            idle.1 = idle.1.saturating_sub(1);
        }
    }
}

/// [`verify_password`] in the work area `area` (grown only for a hash asking for more memory
/// than ours, which never happens with hashes this program made).
fn verify_in(password: &str, hash: &str, area: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(params), Some(expected), Some(salt)) =
        (Params::try_from(&parsed), parsed.hash, parsed.salt)
    else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = parsed
        .version
        .and_then(|v| Version::try_from(v).ok())
        .unwrap_or(Version::V0x13);
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let blocks = params.block_count();
    if area.len() < blocks {
        area.resize(blocks, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params);
    if argon2
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut area[..blocks])
        .is_err()
    {
        return false;
    }
    // Output's equality is constant-time.
    Output::new(&out).is_ok_and(|out| out == expected)
}

/// A hash that matches no password, verified for unknown users so that a wrong user name takes
/// as long as a wrong password.
pub const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$J8Lr0sDR3hV1tk3mJbE4mVgQ3hWcW7sZ0Bm3xq1hJ5k";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let hash = hash_password("correct horse").expect("hash");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("correct hors", &hash));
        assert_ne!(
            hash,
            hash_password("correct horse").expect("hash"),
            "salted"
        );
        assert!(!verify_password("anything", DUMMY_HASH));
        assert!(!verify_password("anything", "not a hash"));
    }

    #[tokio::test]
    async fn the_verifier_matches_like_argon2_and_is_bounded() {
        let hash = hash_password("correct horse").expect("hash");
        let verifier = Verifier::new(1);
        let check = |pw: &str, hash: &str| {
            let slot = verifier.slot().expect("a free slot");
            slot.verify(pw.to_string(), hash.to_string())
        };
        assert!(check("correct horse", &hash).await);
        assert!(!check("correct hors", &hash).await);
        assert!(!check("x", DUMMY_HASH).await);
        assert!(!check("x", "junk").await);
        // With its one slot in use, a second check is refused at once.
        let slot = verifier.slot().expect("the idle slot");
        assert!(matches!(verifier.slot(), Err(Busy)));
        drop(slot);
        assert!(check("correct horse", &hash).await);
        let idle = verifier.idle.lock().expect("lock");
        assert_eq!((idle.0.len(), idle.1), (1, 1), "one work area, reused");
    }

    #[test]
    fn generated_passwords_differ() {
        let a = generate_password().expect("password");
        assert_eq!(a.len(), 24);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, generate_password().expect("password"));
    }
}
