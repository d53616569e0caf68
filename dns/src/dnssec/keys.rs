//! The keys of a signed zone and their timing, kept in `[dns] state_dir/dnssec/ZONE.toml`
//! (directory 0700, file 0600, written to a temporary name and renamed into place).
//!
//! Each key carries its timing as BIND's and Knot's key timing does: `publish` (in the DNSKEY
//! RRset from then), `active` (signs from then), `retire` (signs no more from then) and
//! `remove` (leaves the DNSKEY RRset then). What the zone publishes and who signs what at a
//! given time follows from these times alone, so a restart, or days of downtime, resume the
//! schedule where it stands. The file also keeps the last SOA serial served, so that serials
//! only grow across restarts.

use super::ALGORITHM;
use hickory_proto::dnssec::crypto::EcdsaSigningKey;
use hickory_proto::dnssec::rdata::{CDNSKEY, CDS, DNSKEY, DS};
use hickory_proto::dnssec::{DigestType, PublicKey as _, PublicKeyBuf, SigningKey, TBS};
use hickory_proto::rr::Name;
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What a key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Key-signing key: signs the DNSKEY, CDS and CDNSKEY RRsets; the parent's DS points at it.
    Ksk,
    /// Zone-signing key: signs every other RRset.
    Zsk,
}

impl Role {
    /// `ksk` or `zsk`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ksk => "ksk",
            Role::Zsk => "zsk",
        }
    }
}

/// A key as stored: its role, timing (Unix seconds) and private key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKey {
    role: Role,
    algorithm: u8,
    tag: u16,
    created: u64,
    publish: u64,
    active: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retire: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    remove: Option<u64>,
    /// The PKCS#8 private key, base64.
    private_key: String,
}

/// The state file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    /// The last SOA serial served for the zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    serial: Option<u32>,
    /// The keys, oldest first.
    #[serde(default)]
    key: Vec<StoredKey>,
}

/// A key: timing, the signing key and its DNSKEY.
pub struct Key {
    stored: StoredKey,
    signing: EcdsaSigningKey,
    dnskey: DNSKEY,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("role", &self.stored.role)
            .field("tag", &self.stored.tag)
            .finish_non_exhaustive()
    }
}

/// Where a key stands at some time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Made, not published yet.
    Future,
    /// In the DNSKEY RRset, not signing yet (a successor waiting for caches).
    Published,
    /// Signing (and published).
    Active,
    /// Published, no longer signing (waiting for caches to drop its signatures, or for the
    /// parent's old DS to expire).
    Retired,
    /// Gone from the zone.
    Removed,
}

impl KeyState {
    /// The state's name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Future => "future",
            KeyState::Published => "published",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
            KeyState::Removed => "removed",
        }
    }
}

impl Key {
    /// Makes a new key of `role` published from `publish` and active from `active`.
    fn generate(role: Role, now: u64, publish: u64, active: u64) -> Result<Key, String> {
        let pkcs8 = EcdsaSigningKey::generate_pkcs8(ALGORITHM)
            .map_err(|e| format!("cannot make a key: {e}"))?;
        let private_key = data_encoding::BASE64.encode(pkcs8.secret_pkcs8_der());
        let mut stored = StoredKey {
            role,
            algorithm: u8::from(ALGORITHM),
            tag: 0,
            created: now,
            publish,
            active,
            retire: None,
            remove: None,
            private_key,
        };
        let key = Key::from_stored(stored.clone())?;
        stored.tag = key.tag();
        Key::from_stored(stored)
    }

    fn from_stored(stored: StoredKey) -> Result<Key, String> {
        if stored.algorithm != u8::from(ALGORITHM) {
            return Err(format!(
                "key {} has algorithm {}; onebox-dns signs with {} only",
                stored.tag,
                stored.algorithm,
                u8::from(ALGORITHM)
            ));
        }
        let der = data_encoding::BASE64
            .decode(stored.private_key.as_bytes())
            .map_err(|e| format!("key {}: private_key is not base64: {e}", stored.tag))?;
        let signing = EcdsaSigningKey::from_pkcs8(&PrivatePkcs8KeyDer::from(der), ALGORITHM)
            .map_err(|e| format!("key {}: not an ECDSA P-256 key: {e}", stored.tag))?;
        let public = signing
            .to_public_key()
            .map_err(|e| format!("key {}: {e}", stored.tag))?;
        let flags = match stored.role {
            Role::Ksk => 257,
            Role::Zsk => 256,
        };
        let dnskey = DNSKEY::with_flags(flags, PublicKeyBuf::new(public.into_inner(), ALGORITHM));
        Ok(Key {
            stored,
            signing,
            dnskey,
        })
    }

    /// KSK or ZSK.
    pub fn role(&self) -> Role {
        self.stored.role
    }

    /// The key tag (RFC 4034 appendix B).
    pub fn tag(&self) -> u16 {
        self.dnskey.calculate_key_tag().unwrap_or(0)
    }

    /// The DNSKEY record data.
    pub fn dnskey(&self) -> &DNSKEY {
        &self.dnskey
    }

    /// Signs `data` (to-be-signed bytes, RFC 4034 §3.1.8.1).
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, String> {
        self.signing
            .sign(&TBS::from(data))
            .map_err(|e| format!("signing with key {} failed: {e}", self.tag()))
    }

    /// The key's state at `now`.
    pub fn state(&self, now: u64) -> KeyState {
        let k = &self.stored;
        if k.remove.is_some_and(|t| now >= t) {
            KeyState::Removed
        } else if k.retire.is_some_and(|t| now >= t) {
            KeyState::Retired
        } else if now >= k.active {
            KeyState::Active
        } else if now >= k.publish {
            KeyState::Published
        } else {
            KeyState::Future
        }
    }

    /// Whether the key is in the DNSKEY RRset at `now`.
    pub fn published(&self, now: u64) -> bool {
        matches!(
            self.state(now),
            KeyState::Published | KeyState::Active | KeyState::Retired
        )
    }

    /// When the key was published.
    pub fn publish_time(&self) -> u64 {
        self.stored.publish
    }

    /// When the key started signing.
    pub fn active_time(&self) -> u64 {
        self.stored.active
    }

    /// The times at which this key's state changes.
    fn times(&self) -> impl Iterator<Item = u64> {
        let k = &self.stored;
        [Some(k.publish), Some(k.active), k.retire, k.remove]
            .into_iter()
            .flatten()
    }

    /// The DS record data of this key for the zone `apex` (SHA-256, digest type 2).
    pub fn ds(&self, apex: &Name) -> Result<DS, String> {
        let digest = self
            .dnskey
            .to_digest(apex, DigestType::SHA256)
            .map_err(|e| format!("digest of key {}: {e}", self.tag()))?;
        Ok(DS::new(
            self.tag(),
            ALGORITHM,
            DigestType::SHA256,
            digest.as_ref().to_vec(),
        ))
    }

    /// The CDS record data (RFC 7344): the DS this key should have at the parent.
    pub fn cds(&self, apex: &Name) -> Result<CDS, String> {
        let ds = self.ds(apex)?;
        Ok(CDS::new(
            ds.key_tag(),
            Some(ALGORITHM),
            DigestType::SHA256,
            ds.digest().to_vec(),
        ))
    }

    /// The CDNSKEY record data (RFC 7344).
    pub fn cdnskey(&self) -> CDNSKEY {
        CDNSKEY::with_flags(
            self.dnskey.flags(),
            Some(ALGORITHM),
            self.dnskey.public_key().public_bytes().to_vec(),
        )
    }
}

/// The keys and serial of one zone, as in its state file.
#[derive(Debug)]
pub struct ZoneKeys {
    path: PathBuf,
    serial: Option<u32>,
    keys: Vec<Key>,
}

/// The state file of `zone` under `state_dir`.
pub fn state_file(state_dir: &Path, zone: &Name) -> PathBuf {
    let mut name = zone.to_lowercase().to_ascii();
    if name.len() > 1 {
        name.pop(); // the trailing dot
    } else {
        name = "root".into();
    }
    let name = name.replace('/', "_");
    state_dir.join("dnssec").join(format!("{name}.toml"))
}

impl ZoneKeys {
    /// Reads the keys of `zone`; `Ok(None)` when it has no state file yet.
    pub fn read(state_dir: &Path, zone: &Name) -> Result<Option<ZoneKeys>, String> {
        let path = state_file(state_dir, zone);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
        };
        let file: StateFile =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let keys = file
            .key
            .into_iter()
            .map(Key::from_stored)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Some(ZoneKeys {
            path,
            serial: file.serial,
            keys,
        }))
    }

    /// Reads the keys of `zone`, or makes a KSK and a ZSK (active at once) and writes them when
    /// there are none. Creates `state_dir` (0700) as needed.
    pub fn open_or_create(state_dir: &Path, zone: &Name, now: u64) -> Result<ZoneKeys, String> {
        if let Some(keys) = ZoneKeys::read(state_dir, zone)?
            && keys.keys.iter().any(|k| k.role() == Role::Ksk)
            && keys.keys.iter().any(|k| k.role() == Role::Zsk)
        {
            return Ok(keys);
        }
        let mut keys = ZoneKeys {
            path: state_file(state_dir, zone),
            serial: None,
            keys: Vec::new(),
        };
        keys.add(Role::Ksk, now, now, now)?;
        keys.add(Role::Zsk, now, now, now)?;
        keys.save()?;
        tracing::info!(
            "zone {zone}: made DNSSEC keys (KSK {}, ZSK {}, algorithm 13) in {}",
            keys.keys[0].tag(),
            keys.keys[1].tag(),
            keys.path.display()
        );
        Ok(keys)
    }

    /// Makes a new key whose tag no other key of the zone has.
    pub fn add(&mut self, role: Role, now: u64, publish: u64, active: u64) -> Result<u16, String> {
        for _ in 0..16 {
            let key = Key::generate(role, now, publish, active)?;
            if self.keys.iter().all(|k| k.tag() != key.tag()) {
                let tag = key.tag();
                self.keys.push(key);
                return Ok(tag);
            }
        }
        Err("cannot make a key with a tag of its own".into())
    }

    /// Writes the state file: to a temporary name (0600) in the same directory, then renamed.
    pub fn save(&self) -> Result<(), String> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let state_dir = dir.parent().unwrap_or(Path::new("."));
        for d in [state_dir, dir] {
            if !d.exists() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(d)
                    .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
            }
        }
        let file = StateFile {
            serial: self.serial,
            key: self.keys.iter().map(|k| k.stored.clone()).collect(),
        };
        let text = format!(
            "# onebox-dns DNSSEC keys and state of one zone: written by onebox-dns, private.\n{}",
            toml::to_string(&file).map_err(|e| format!("{}: {e}", self.path.display()))?
        );
        let tmp = self.path.with_extension("toml.tmp");
        let write = || -> std::io::Result<()> {
            let _ = fs::remove_file(&tmp);
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
            fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every key, oldest first.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// The last SOA serial served.
    pub fn serial(&self) -> Option<u32> {
        self.serial
    }

    /// Records the SOA serial served.
    pub fn set_serial(&mut self, serial: u32) {
        self.serial = Some(serial);
    }

    /// The keys in the DNSKEY RRset at `now`.
    pub fn published(&self, now: u64) -> impl Iterator<Item = &Key> {
        self.keys.iter().filter(move |k| k.published(now))
    }

    /// The KSKs that sign the DNSKEY, CDS and CDNSKEY RRsets at `now`: every published KSK
    /// that is active, and retired ones too (they sign until removed: the parent's old DS may
    /// still be cached).
    pub fn signing_ksks(&self, now: u64) -> impl Iterator<Item = &Key> {
        self.keys.iter().filter(move |k| {
            k.role() == Role::Ksk && matches!(k.state(now), KeyState::Active | KeyState::Retired)
        })
    }

    /// The ZSK that signs the other RRsets at `now`: the newest active one.
    pub fn signing_zsk(&self, now: u64) -> Option<&Key> {
        self.keys
            .iter()
            .filter(|k| k.role() == Role::Zsk && k.state(now) == KeyState::Active)
            .max_by_key(|k| k.stored.active)
    }

    /// The KSKs whose DS the parent should have (published as CDS/CDNSKEY): the newest active
    /// KSK that has been published for `ready_after` seconds (caches know it), else the active
    /// one; never a retired one.
    pub fn submitted_ksks(&self, now: u64, ready_after: u64) -> Vec<&Key> {
        let mut active: Vec<&Key> = self
            .keys
            .iter()
            .filter(|k| k.role() == Role::Ksk && k.state(now) == KeyState::Active)
            .collect();
        active.sort_by_key(|k| k.stored.created);
        if active.len() <= 1 {
            return active;
        }
        match active
            .iter()
            .rev()
            .find(|k| now >= k.stored.publish.saturating_add(ready_after))
        {
            Some(k) => vec![*k],
            None => vec![active[0]],
        }
    }

    /// Drops the keys removed before `now` from the file's list. Returns whether any was.
    pub fn forget_removed(&mut self, now: u64) -> bool {
        let before = self.keys.len();
        self.keys.retain(|k| k.state(now) != KeyState::Removed);
        self.keys.len() != before
    }

    /// The next time after `after` at which a key's state changes, or at which a KSK becomes
    /// ready for its CDS (`ready_after` after its publication).
    pub fn next_change(&self, after: u64, ready_after: u64) -> Option<u64> {
        self.keys
            .iter()
            .flat_map(|k| {
                let ready = (k.role() == Role::Ksk).then(|| k.stored.publish + ready_after);
                k.times().chain(ready)
            })
            .filter(|&t| t > after)
            .min()
    }

    /// Starts a ZSK rollover if the signing ZSK has signed for `lifetime` seconds and has no
    /// successor: a new ZSK is published now and signs after `publish_wait` seconds (the
    /// DNSKEY TTL and propagation delay: caches then know it); the old one stops signing
    /// then and leaves the DNSKEY RRset `retire_wait` seconds later (the zone's largest TTL
    /// and propagation delay: its signatures are out of caches). Returns the new key's tag.
    pub fn roll_zsk_if_due(
        &mut self,
        now: u64,
        lifetime: u64,
        publish_wait: u64,
        retire_wait: u64,
    ) -> Result<Option<u16>, String> {
        let Some(current) = self.signing_zsk(now) else {
            return Ok(None);
        };
        let successor = self.keys.iter().any(|k| {
            k.role() == Role::Zsk && k.stored.active > current.stored.active && k.published(now)
                || (k.role() == Role::Zsk && k.state(now) == KeyState::Future)
        });
        if successor || now < current.stored.active.saturating_add(lifetime) {
            return Ok(None);
        }
        let current_tag = current.tag();
        let switch = now + publish_wait;
        let tag = self.add(Role::Zsk, now, now, switch)?;
        for k in &mut self.keys {
            if k.tag() == current_tag && k.role() == Role::Zsk {
                k.stored.retire = Some(switch);
                k.stored.remove = Some(switch + retire_wait);
            }
        }
        Ok(Some(tag))
    }

    /// Starts a KSK rollover: a new KSK, published and signing the DNSKEY RRset now beside the
    /// old one. Its CDS/CDNSKEY replace the old key's once it has been published for the DNSKEY
    /// TTL and propagation delay. Returns the new key's tag.
    pub fn start_ksk_rollover(&mut self, now: u64) -> Result<u16, String> {
        let pending = self
            .keys
            .iter()
            .filter(|k| k.role() == Role::Ksk && k.state(now) == KeyState::Active)
            .count();
        if pending > 1 {
            return Err(
                "a KSK rollover is already under way: finish it with `ksk-submitted` first".into(),
            );
        }
        self.add(Role::Ksk, now, now, now)
    }

    /// Ends a KSK rollover once the parent publishes the new key's DS: every older active KSK
    /// retires now and leaves the zone after `ds_wait` seconds (the parent's DS TTL and the
    /// propagation delay: caches drop the old DS). Returns the tags retired.
    pub fn finish_ksk_rollover(&mut self, now: u64, ds_wait: u64) -> Result<Vec<u16>, String> {
        let newest = self
            .keys
            .iter()
            .filter(|k| k.role() == Role::Ksk && k.state(now) == KeyState::Active)
            .max_by_key(|k| k.stored.created)
            .map(|k| k.tag())
            .ok_or("the zone has no active KSK")?;
        let mut retired = Vec::new();
        for k in &mut self.keys {
            if k.role() == Role::Ksk && k.state(now) == KeyState::Active && k.tag() != newest {
                k.stored.retire = Some(now + ds_wait);
                k.stored.remove = Some(now + ds_wait);
                retired.push(k.tag());
            }
        }
        if retired.is_empty() {
            return Err("no KSK rollover is under way (the zone has one active KSK)".into());
        }
        Ok(retired)
    }
}
