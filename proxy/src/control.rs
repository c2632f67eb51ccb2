//! The control socket, `<log dir>/control.sock`: how `clawproxy rotate` reaches the proxy
//! that runs on a data dir, to put a rotated key in use and record the rotation in its log.
//!
//! Only the data dir's owner can reach it: the socket is 0600, inside the 0700 `receipts`
//! directory, so holding the socket is as good as holding the keys (which that user can
//! already replace). One JSON line each way:
//!
//! ```text
//! → {"rotated":{"key":"proxy","new":"<kid>","old":"<kid>"}}
//! ← {"log":"clawproxy/p1a2b3c4d","seq":17,"id":"01J…"}      or      {"error":"…"}
//! ```

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use claw_policy::datadir::DataDir;
use claw_verifier::receipt::Rotation;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};

use crate::stack::Proxy;

/// The socket's file name inside the log directory.
pub const SOCKET: &str = "control.sock";

/// Longest request line read.
const MAX_LINE: u64 = 4096;

/// How long either side waits for the other: recording a rotation is one durable receipt and
/// a checkpoint.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Request {
    rotated: Rotation,
}

/// Where a running proxy recorded a rotation.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Recorded {
    /// The log's origin.
    pub log: String,
    /// The `key_rotation` receipt's seq.
    pub seq: u64,
    /// Its id.
    pub id: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
enum Answer {
    Recorded(Recorded),
    Error { error: String },
}

/// Binds the control socket in `log_dir`, replacing a stale one: the caller holds the log's
/// lock, so no other live proxy owns it.
pub fn bind(log_dir: &Path) -> io::Result<UnixListener> {
    let path = log_dir.join(SOCKET);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Answers control requests until the task is dropped.
pub async fn serve(proxy: Arc<Proxy>, listener: UnixListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            if let Err(e) = tokio::time::timeout(TIMEOUT, answer(&proxy, stream)).await {
                warn!(error = %e, "control request timed out");
            }
        });
    }
}

async fn answer(proxy: &Proxy, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let read = BufReader::new(read.take(MAX_LINE))
        .read_line(&mut line)
        .await;
    let answer = match read.map(|_| serde_json::from_str::<Request>(&line)) {
        Err(e) => Answer::Error {
            error: format!("reading the request: {e}"),
        },
        Ok(Err(e)) => Answer::Error {
            error: format!("not a control request: {e}"),
        },
        Ok(Ok(request)) => {
            let key = request.rotated.key.as_str();
            match crate::rotate::apply(proxy, request.rotated).await {
                Ok(recorded) => {
                    info!(key, seq = recorded.seq, "key rotation in use and recorded");
                    Answer::Recorded(recorded)
                }
                Err(e) => {
                    let error = format!("{e:#}");
                    warn!(key, %error, "key rotation refused; the current key stays in use");
                    Answer::Error { error }
                }
            }
        }
    };
    let mut bytes = serde_json::to_vec(&answer).unwrap_or_default();
    bytes.push(b'\n');
    let _ = write.write_all(&bytes).await;
}

/// The control sockets of the proxies that may run on `dir` as `proxy_id`: its own log's,
/// and each fleet instance's (`receipts/<proxy id>/<instance>`).
pub fn sockets(dir: &DataDir, proxy_id: &str) -> Vec<PathBuf> {
    let log = dir.receipts().join(proxy_id);
    let mut found: Vec<PathBuf> = std::fs::read_dir(&log)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join(SOCKET))
        .chain([log.join(SOCKET)])
        .filter(|path| path.exists())
        .collect();
    found.sort();
    found
}

/// Asks the proxy behind `socket` to put `rotation` in use. `Ok(None)`: no proxy listens
/// there (a socket left by one that stopped).
pub async fn ask(socket: &Path, rotation: &Rotation) -> anyhow::Result<Option<Recorded>> {
    let stream = match UnixStream::connect(socket).await {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(anyhow::anyhow!("{}: {e}", socket.display())),
    };
    let exchange = async {
        let (read, mut write) = stream.into_split();
        let mut request = serde_json::to_vec(&Request {
            rotated: rotation.clone(),
        })?;
        request.push(b'\n');
        write.write_all(&request).await?;
        let mut line = String::new();
        BufReader::new(read.take(MAX_LINE))
            .read_line(&mut line)
            .await?;
        anyhow::Ok(serde_json::from_str::<Answer>(&line)?)
    };
    match tokio::time::timeout(TIMEOUT, exchange).await {
        Err(_) => anyhow::bail!("{}: no answer within {TIMEOUT:?}", socket.display()),
        Ok(Err(e)) => anyhow::bail!("{}: {e:#}", socket.display()),
        Ok(Ok(Answer::Error { error })) => anyhow::bail!("{error}"),
        Ok(Ok(Answer::Recorded(recorded))) => Ok(Some(recorded)),
    }
}

#[cfg(test)]
mod tests {
    use claw_verifier::receipt::RotatedKey;

    use super::*;

    #[test]
    fn sockets_are_found_for_the_proxy_and_each_of_its_fleet_instances() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let log = dir.receipts().join("p0test01");
        for sub in ["", "i-2", "i-1", "i-3"] {
            std::fs::create_dir_all(log.join(sub)).unwrap();
        }
        // Instance i-3 runs no proxy; another proxy's socket is not this one's.
        for socket in ["control.sock", "i-1/control.sock", "i-2/control.sock"] {
            std::fs::write(log.join(socket), b"").unwrap();
        }
        let other = dir.receipts().join("p0other1");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join(SOCKET), b"").unwrap();
        assert_eq!(
            sockets(&dir, "p0test01"),
            [
                log.join("control.sock"),
                log.join("i-1/control.sock"),
                log.join("i-2/control.sock")
            ]
        );
        assert!(sockets(&dir, "p0absent").is_empty());
    }

    #[tokio::test]
    async fn a_socket_left_by_a_stopped_proxy_means_no_proxy() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(SOCKET);
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let rotation = Rotation {
            key: RotatedKey::Issuer,
            old: "A".repeat(43),
            new: "B".repeat(43),
        };
        assert!(ask(&path, &rotation).await.unwrap().is_none());
        assert!(
            ask(&tmp.path().join("absent.sock"), &rotation)
                .await
                .unwrap()
                .is_none()
        );
    }
}
