//! The control socket, `[dns] state_dir/control.sock` (0600 in a 0700 directory: the server's
//! user and root only), through which `onebox-dns ksk-rollover` and `ksk-submitted` ask the
//! running server to change a zone's keys. One request line, one answer, then the connection
//! closes. The answer's first line is `ok` or `error: ...`.

use super::{Signer, now};
use crate::query::Engine;
use hickory_proto::rr::Name;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// The control socket's path under `state_dir`.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("control.sock")
}

/// Binds the control socket (replacing a stale one) and answers requests until the process
/// ends.
pub async fn serve(signer: Arc<Signer>, engine: Arc<Engine>) -> std::io::Result<()> {
    let path = socket_path(signer.state_dir());
    if !signer.state_dir().exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .create(signer.state_dir())?;
        std::fs::set_permissions(signer.state_dir(), std::fs::Permissions::from_mode(0o700))?;
    }
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let signer = signer.clone();
            let engine = engine.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                let mut reader = tokio::io::BufReader::new(read.take(4096));
                let got =
                    tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await;
                let answer = match got {
                    Ok(Ok(_)) => match handle(&signer, &engine, line.trim()).await {
                        Ok(text) => format!("ok\n{text}"),
                        Err(e) => format!("error: {e}\n"),
                    },
                    _ => "error: no request\n".to_string(),
                };
                let _ = write.write_all(answer.as_bytes()).await;
                let _ = write.shutdown().await;
            });
        }
    });
    Ok(())
}

async fn handle(signer: &Arc<Signer>, engine: &Arc<Engine>, line: &str) -> Result<String, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let (command, zone, rest) = match words.as_slice() {
        [command, zone, rest @ ..] => (*command, *zone, rest),
        _ => return Err(format!("bad request `{line}`")),
    };
    let mut apex = Name::from_ascii(zone).map_err(|e| format!("bad zone name `{zone}`: {e}"))?;
    apex.set_fqdn(true);
    let _writer = signer.writer.lock().await;
    let now = now();
    let message = match (command, rest) {
        ("ksk-rollover", []) => {
            let tag = signer.with_keys(&apex, |keys| keys.start_ksk_rollover(now))?;
            format!(
                "zone {apex}: new KSK {tag} published and signing the DNSKEY RRset beside the \
                 old one; its CDS/CDNSKEY replace the old key's after the DNSKEY TTL and the \
                 propagation delay. Give the registrar its DS (below, or `onebox-dns ds`), and \
                 once the parent serves it run `onebox-dns ksk-submitted {}`.\n",
                apex.to_ascii().trim_end_matches('.')
            )
        }
        ("ksk-submitted", [ds_ttl]) => {
            let ds_ttl: u64 = ds_ttl
                .parse()
                .map_err(|_| format!("bad DS TTL `{ds_ttl}`"))?;
            let wait = ds_ttl + signer.policy().propagation_delay;
            let tags = signer.with_keys(&apex, |keys| keys.finish_ksk_rollover(now, wait))?;
            format!(
                "zone {apex}: old KSK(s) {tags:?} leave the zone in {wait} s (the parent's DS TTL \
                 and the propagation delay)\n"
            )
        }
        _ => return Err(format!("unknown request `{line}`")),
    };
    let catalog = engine.catalog().load_full();
    let signer2 = signer.clone();
    let apex2 = apex.clone();
    let new = tokio::task::spawn_blocking(move || signer2.resign_zone(&catalog, &apex2, now))
        .await
        .map_err(|e| e.to_string())??;
    engine.catalog().store(Arc::new(new));
    let ds = super::ds::text(signer.state_dir(), &apex)?;
    Ok(format!("{message}{ds}"))
}

/// Sends `request` to the server running with `state_dir` and returns its answer (without the
/// `ok` line), or the error it gave.
pub fn request(state_dir: &Path, request: &str) -> Result<String, String> {
    let path = socket_path(state_dir);
    let mut stream = std::os::unix::net::UnixStream::connect(&path).map_err(|e| {
        format!(
            "cannot reach the running onebox-dns at {}: {e} (is it running with this site file?)",
            path.display()
        )
    })?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    stream
        .write_all(format!("{request}\n").as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut answer = String::new();
    std::io::BufReader::new(&mut stream)
        .take(1 << 20)
        .read_to_string(&mut answer)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = answer.lines();
    match lines.next() {
        Some("ok") => Ok(lines.map(|l| format!("{l}\n")).collect()),
        Some(error) => Err(error.trim_start_matches("error: ").to_string()),
        None => Err("the server closed the connection without an answer".into()),
    }
}
