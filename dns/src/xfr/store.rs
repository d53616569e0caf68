//! The copies of the secondary zones in the state directory (`[dns] state_dir`/secondary/),
//! so that a restart serves the last good copy at once: `NAME.copy` holds the records in wire
//! form (length-prefixed, the SOA first), `NAME.timers` the time of the last successful refresh
//! (for the SOA expire timer across restarts). Both are replaced atomically (written aside,
//! synced, renamed). onebox-dns owns the directory: 0700, files 0600.

use crate::xfr::client;
use crate::zone::Zone;
use hickory_proto::rr::{Name, Record};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

const MAGIC: &[u8] = b"onebox-dns secondary copy 1\n";

/// Where the copies are kept.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// A copy read back.
#[derive(Debug)]
pub struct Saved {
    /// The zone.
    pub zone: Zone,
    /// When it was last refreshed (Unix seconds), if that was recorded.
    pub refreshed: Option<u64>,
}

impl Store {
    /// The store under `state_dir`.
    pub fn new(state_dir: &Path) -> Store {
        Store {
            dir: state_dir.join("secondary"),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, zone: &Name, ext: &str) -> PathBuf {
        let name = zone.to_lowercase().to_string();
        let name = name.trim_end_matches('.');
        self.dir.join(format!("{name}.{ext}"))
    }

    /// Reads the copy of `zone`, if there is one; `max_bytes` bounds what is read.
    pub fn load(&self, zone: &Name, max_bytes: u64) -> Result<Option<Saved>, String> {
        let path = self.file(zone, "copy");
        let bytes = match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
            Ok(meta) if meta.len() > max_bytes.saturating_mul(2) => {
                return Err(format!(
                    "{}: larger than transfer_max_bytes allows",
                    path.display()
                ));
            }
            Ok(_) => std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?,
        };
        let Some(mut rest) = bytes.strip_prefix(MAGIC) else {
            return Err(format!("{}: not a copy this version wrote", path.display()));
        };
        let mut records = Vec::new();
        while !rest.is_empty() {
            let (len, tail) = rest.split_at_checked(4).ok_or("truncated")?;
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let (wire, tail) = tail
                .split_at_checked(len)
                .ok_or_else(|| format!("{}: truncated", path.display()))?;
            let mut decoder = BinDecoder::new(wire);
            let record = Record::read(&mut decoder)
                .map_err(|e| format!("{}: an undecodable record: {e}", path.display()))?;
            records.push(record);
            rest = tail;
        }
        let zone = client::build(zone, records, &path.display().to_string())?;
        let refreshed = std::fs::read_to_string(self.file(zone.origin(), "timers"))
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    l.strip_prefix("refreshed ")
                        .and_then(|n| n.trim().parse().ok())
                })
            });
        Ok(Some(Saved { zone, refreshed }))
    }

    /// Writes the copy of `zone`.
    pub fn save(&self, zone: &Zone) -> Result<(), String> {
        let mut bytes = MAGIC.to_vec();
        let mut wire = Vec::with_capacity(256);
        for record in zone.records() {
            wire.clear();
            let mut encoder = BinEncoder::new(&mut wire);
            record
                .emit(&mut encoder)
                .map_err(|e| format!("cannot encode {record}: {e}"))?;
            bytes.extend_from_slice(&(wire.len() as u32).to_be_bytes());
            bytes.extend_from_slice(&wire);
        }
        self.write(&self.file(zone.origin(), "copy"), &bytes)
    }

    /// Records that `zone` was refreshed at `when` (Unix seconds).
    pub fn save_refreshed(&self, zone: &Name, when: u64) -> Result<(), String> {
        self.write(
            &self.file(zone, "timers"),
            format!("refreshed {when}\n").as_bytes(),
        )
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), String> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let tmp = PathBuf::from(format!("{}.tmp", path.display()));
        let result = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)?;
            std::fs::File::open(&self.dir)?.sync_all()
        })();
        result.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write {}: {e}", path.display())
        })
    }
}
