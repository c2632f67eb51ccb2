//! A recording upstream: a minimal Connect-shaped HTTP server that remembers every request head
//! it receives, so adversarial tests can prove that nothing reached the upstream, and that can
//! misbehave (answer slowly, hang, reset, send garbage or a redirect) for fault tests.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the recorder received.
#[derive(Clone, Default)]
pub struct Recorder {
    heads: Arc<Mutex<Vec<String>>>,
}

/// How the recorder answers each request it records.
#[derive(Clone, Debug)]
pub enum Answer {
    /// `200` with this JSON body.
    Json(serde_json::Value),
    /// The JSON answer after a pause.
    Slow(Duration, serde_json::Value),
    /// Exactly these bytes, then close (garbage, broken framing, redirects).
    Raw(Vec<u8>),
    /// Nothing: the connection stays open and silent.
    Hang,
    /// A TCP reset.
    Reset,
}

impl Recorder {
    /// Starts on 127.0.0.1:0 and answers every request with `body` (status 200, JSON).
    pub async fn start(body: serde_json::Value) -> (Self, SocketAddr) {
        Self::answering(Answer::Json(body)).await
    }

    /// Starts on 127.0.0.1:0 and answers every request as `answer` says.
    pub async fn answering(answer: Answer) -> (Self, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind recorder");
        let addr = listener.local_addr().expect("recorder addr");
        let recorder = Recorder::default();
        let heads = recorder.heads.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let heads = heads.clone();
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = stream.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                            let len = head
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse::<usize>().ok())?
                                })
                                .unwrap_or(0);
                            if buf.len() < end + 4 + len {
                                break;
                            }
                            buf.drain(..end + 4 + len);
                            heads.lock().unwrap().push(head);
                            let bytes = match &answer {
                                Answer::Json(body) => json(body),
                                Answer::Slow(pause, body) => {
                                    tokio::time::sleep(*pause).await;
                                    json(body)
                                }
                                Answer::Raw(bytes) => {
                                    let _ = stream.write_all(bytes).await;
                                    return;
                                }
                                Answer::Hang => {
                                    std::future::pending::<()>().await;
                                    return;
                                }
                                Answer::Reset => {
                                    let _ = stream.set_zero_linger();
                                    return;
                                }
                            };
                            if stream.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (recorder, addr)
    }

    /// Every request head received so far.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    /// How many requests arrived.
    pub fn count(&self) -> usize {
        self.heads.lock().unwrap().len()
    }
}

/// A Connect-shaped `200` answer carrying `body`.
fn json(body: &serde_json::Value) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n1password-connect-version: 1.8.1\r\ncontent-length: {}\r\n\r\n{}",
        body.len(),
        body
    )
    .into_bytes()
}
