//! The admin listener: `/healthz` (the process is up), `/readyz` (the log can take receipts
//! and, in a fleet, the shared revocation list is current) and Prometheus `/metrics`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::respond::Body;
use crate::stack::Proxy;

/// Serves the admin endpoints until the task is dropped.
pub async fn serve(proxy: Arc<Proxy>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let proxy = proxy.clone();
                async move { Ok::<_, Infallible>(answer(&proxy, &request)) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(proxy: &Proxy, request: &Request<Incoming>) -> Response<Body> {
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            if proxy.evidence.is_poisoned() {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "receipt log poisoned after a write or fsync error; restart the proxy\n",
                )
            } else if proxy.drain.is_draining() {
                text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
            } else if let Some(stale) = proxy.auth.fleet_stale() {
                // A balancer should send agents to a proxy that can decide.
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("{stale}; every token is refused until PostgreSQL answers\n"),
                )
            } else {
                text(StatusCode::OK, "ready\n")
            }
        }
        "/metrics" => {
            let mut response = text(
                StatusCode::OK,
                &proxy.metrics.render(&proxy.evidence.metrics()),
            );
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4".parse().expect("static header"),
            );
            response
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: /healthz /readyz /metrics\n",
        ),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response
}
