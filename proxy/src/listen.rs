//! The listener: accept loop, HTTP/1.1 connections, CONNECT tunnels and interception.
//!
//! Per connection: hyper parses strictly (bounded head size and header count, a head deadline);
//! the first authenticated request fixes the connection's identity and every later request
//! must present the same token. `CONNECT` to a configured upstream, or to a host the job's
//! contract has `host_rules` for, is answered `200`, then TLS is terminated with a leaf for that
//! host and each inner request is served like a plain one (the inner `Host` must name the
//! CONNECT host). `CONNECT` to another allowed host becomes an opaque tunnel to the address that
//! was checked.
//!
//! Every client stream is wrapped in [`WriteDeadline`]: a write the client leaves blocked for
//! `idle_timeout_ms` (it stopped reading) fails, which ends the connection, tunnel or
//! interception riding on it. Without it a client that never reads would pin a task, its
//! socket and the answer buffered for it, for ever.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, debug, info_span, warn};

use crate::auth::Identity;
use crate::drain::Watcher;
use crate::receipt::Req;
use crate::respond::{self, Body};
use crate::stack::{Proxy, Target};

/// Serves `listener` until `shutdown` resolves, then stops accepting.
pub async fn serve(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let proxy = proxy.clone();
                    let span = info_span!("conn", client.addr = %peer);
                    tokio::spawn(serve_connection(proxy, stream, peer).instrument(span));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Per-connection state: the identity fixed by the first authenticated request.
#[derive(Default)]
pub(crate) struct Connection {
    identity: Mutex<Option<Arc<Identity>>>,
}

fn builder(proxy: &Proxy) -> http1::Builder {
    let limits = &proxy.config.limits;
    let mut builder = http1::Builder::new();
    builder
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers)
        .header_read_timeout(limits.header_timeout())
        .timer(TokioTimer::new())
        .keep_alive(true);
    builder
}

async fn serve_connection(proxy: Arc<Proxy>, stream: TcpStream, peer: SocketAddr) {
    let mut watcher = proxy.drain.watcher();
    let _ = stream.set_nodelay(true);
    let connection = Arc::new(Connection::default());
    let state = connection.clone();
    let service = {
        let proxy = proxy.clone();
        service_fn(move |request| {
            let proxy = proxy.clone();
            let connection = connection.clone();
            async move { Ok::<_, Infallible>(handle(proxy, connection, peer, request).await) }
        })
    };
    let stream = WriteDeadline::new(stream, proxy.config.limits.idle_timeout());
    let connection = builder(&proxy)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    // On shutdown: an idle connection closes now, one mid-request after its answer.
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = watcher.draining() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = served {
        if error.is_parse() || error.is_parse_too_large() {
            let identity = state
                .identity
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let reason = error.to_string();
            proxy
                .record_malformed(
                    identity.as_deref(),
                    peer,
                    &Req::default(),
                    &reason,
                    Instant::now(),
                )
                .await;
        }
        debug!(%error, "connection ended with an error");
    }
}

async fn handle(
    proxy: Arc<Proxy>,
    connection: Arc<Connection>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let identity = match authenticate(&proxy, &connection, request.headers()) {
        Ok(identity) => identity,
        Err(response) => return proxy.record_unauthenticated(peer, &request, response).await,
    };
    if let Err(reason) = proxy.serve_job(&identity).await {
        // Not in the job's chain: a log the fleet does not know serves the job would be
        // missing from its close.
        let response = crate::respond::state_unavailable(&reason);
        return proxy
            .record_anonymous(
                peer,
                &request,
                response,
                crate::stack::STATE_UNAVAILABLE,
                &reason,
            )
            .await;
    }
    if request.method() == Method::CONNECT {
        return connect(proxy, identity, peer, request).await;
    }
    let target = match Target::from_absolute(&request) {
        Ok(target) => target,
        Err(reason) => {
            return proxy
                .refuse_malformed(&identity, peer, &request, &reason, started)
                .await;
        }
    };
    proxy
        .handle_request(&identity, peer, target, request, started)
        .await
}

/// The identity of this request: the connection's, which the first request fixes.
// The error is the finished 407 response the handler returns as is.
#[allow(clippy::result_large_err)]
fn authenticate(
    proxy: &Proxy,
    connection: &Connection,
    headers: &http::HeaderMap,
) -> Result<Arc<Identity>, Response<Body>> {
    let presented = crate::auth::credentials(headers)
        .map_err(|reason| respond::proxy_auth_required(&reason))?;
    let mut fixed = connection
        .identity
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(identity) = fixed.as_ref() {
        if !identity.presented_by(&presented) {
            return Err(respond::proxy_auth_required(
                "this connection belongs to another job token",
            ));
        }
        proxy
            .auth
            .recheck(identity)
            .map_err(|refused| respond::auth_refused(&refused))?;
        return Ok(identity.clone());
    }
    let (identity, cached) = proxy
        .auth
        .authenticate(&presented)
        .map_err(|refused| respond::auth_refused(&refused))?;
    let counter = if cached {
        &proxy.metrics.token_cache_hits
    } else {
        &proxy.metrics.token_cache_misses
    };
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    proxy.track_job(&identity);
    *fixed = Some(identity.clone());
    Ok(identity)
}

async fn connect(
    proxy: Arc<Proxy>,
    identity: Arc<Identity>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let target = match Target::from_connect(&request) {
        Ok(target) => target,
        Err(reason) => {
            return proxy
                .refuse_malformed(&identity, peer, &request, &reason, started)
                .await;
        }
    };
    if proxy.intercepts(&identity, &target.host) {
        if proxy.upstream(&target.host).is_none() {
            // A host with host_rules: on any port network_egress allows.
            if let Some(refused) = proxy
                .refuse_connect(&identity, peer, &target, started)
                .await
            {
                return refused;
            }
        } else if target.port != 443 {
            return proxy
                .refuse_egress(
                    &identity,
                    peer,
                    &target,
                    "CONNECT",
                    "configured upstreams are intercepted on port 443 only",
                    started,
                )
                .await;
        }
        let acceptor = match proxy.interceptor.server_config(&target.host) {
            Ok(config) => TlsAcceptor::from(config),
            Err(error) => {
                warn!(error = %format!("{error:#}"), "cannot mint a leaf certificate");
                return respond::error(
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    "clawproxy could not prepare interception for this host",
                );
            }
        };
        let upgrade = hyper::upgrade::on(request);
        let watcher = proxy.drain.watcher();
        tokio::spawn(
            async move {
                match upgrade.await {
                    Ok(upgraded) => {
                        let tls = (acceptor, upgraded);
                        intercept(proxy, identity, peer, target, tls, watcher).await
                    }
                    Err(error) => debug!(%error, "upgrade failed"),
                }
            }
            .in_current_span(),
        );
        return Response::new(Body::default());
    }
    proxy
        .open_tunnel(identity, peer, target, request, started)
        .await
}

async fn intercept(
    proxy: Arc<Proxy>,
    identity: Arc<Identity>,
    peer: SocketAddr,
    target: Target,
    (acceptor, upgraded): (TlsAcceptor, hyper::upgrade::Upgraded),
    mut watcher: Watcher,
) {
    let started = Instant::now();
    let deadline = proxy.config.limits.header_timeout();
    let tls = match tokio::time::timeout(deadline, acceptor.accept(TokioIo::new(upgraded))).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            // Also where a ClientHello naming another host (SNI ≠ CONNECT authority) or none
            // ends. rustls errors name what was wrong, never the bytes that were sent.
            debug!(%error, host = %target.host, "TLS handshake refused");
            let reason = format!("TLS handshake refused: {error}");
            let req = target.req(&Method::CONNECT);
            proxy
                .record_malformed(Some(&identity), peer, &req, &reason, started)
                .await;
            return;
        }
        Err(_) => {
            let reason = format!("no TLS handshake within {} ms", deadline.as_millis());
            let req = target.req(&Method::CONNECT);
            proxy
                .record_malformed(Some(&identity), peer, &req, &reason, started)
                .await;
            return;
        }
    };
    let job = identity.clone();
    let tunnel = target.clone();
    let service = {
        let proxy = proxy.clone();
        service_fn(move |request: Request<Incoming>| {
            let proxy = proxy.clone();
            let identity = identity.clone();
            let target = target.clone();
            async move {
                let started = Instant::now();
                if let Err(refused) = proxy.auth.recheck(&identity) {
                    return Ok::<_, Infallible>(respond::auth_refused(&refused));
                }
                let response = match target.inner(&request) {
                    Ok(inner) => {
                        proxy
                            .handle_request(&identity, peer, inner, request, started)
                            .await
                    }
                    Err(reason) => {
                        proxy
                            .refuse_malformed(&identity, peer, &request, &reason, started)
                            .await
                    }
                };
                Ok(response)
            }
        })
    };
    let connection = builder(&proxy).serve_connection(TokioIo::new(tls), service);
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = watcher.draining() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = served {
        if error.is_parse() || error.is_parse_too_large() {
            // Inside the tunnel the job is known: the receipt goes under it.
            let req = tunnel.req(&Method::CONNECT);
            let reason = error.to_string();
            proxy
                .record_malformed(Some(&job), peer, &req, &reason, Instant::now())
                .await;
        }
        debug!(%error, "intercepted connection ended with an error");
    }
}

/// A client stream whose writes must make progress: once a write has stayed blocked for
/// `limit` (the client stopped reading), it fails with `TimedOut` and the connection ends.
/// Reads are untouched: hyper bounds heads (`header_timeout_ms`) and tunnels bound idle reads.
struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    /// Armed by the first blocked write since the last one that made progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Passes a ready result through (and disarms the deadline); on `Pending`, arms it if
    /// needed and fails once it has passed.
    fn deadline<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client has not read its answer within idle_timeout_ms",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.deadline(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.deadline(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.deadline(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.deadline(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_write_the_peer_never_reads_fails_but_a_slow_reader_is_served() {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut stream = WriteDeadline::new(near, Duration::from_millis(300));
        // Far more than the pipe holds, read as it comes: every write makes progress.
        let reader = tokio::spawn(async move {
            let mut buf = vec![0; 256 * 1024];
            far.read_exact(&mut buf).await.unwrap();
            far
        });
        stream.write_all(&[1; 256 * 1024]).await.unwrap();
        let _far = reader.await.unwrap();
        // Nobody reads any more: the write fails instead of waiting for ever.
        let error = stream.write_all(&[2; 256 * 1024]).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    }
}
