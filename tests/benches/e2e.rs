//! End to end through an in-process proxy: one keep-alive agent connection sends an allowed
//! `read_item` (absolute-form, Proxy-Authorization) and reads the whole answer. Each iteration
//! is authenticated, classified, decided, credential-injected, forwarded to connect-sim, its
//! response category checked, and its receipt signed and fdatasync'd before release — so the
//! figure includes one fsync of the temp dir's file system.
//!
//! `cargo bench -p claw-tests --bench e2e`

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::TcpStream;

use claw_tests::raw::basic;
use claw_tests::{Stack, Upstream};
use connect_sim::demo::{DEMO_DB_ITEM_ID, DEMO_VAULT_ID};
use criterion::{Criterion, criterion_group, criterion_main};

/// Reads one response with a `Content-Length` body; returns its status code.
fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> u16 {
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut chunk).expect("read");
        assert!(n > 0, "the proxy closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buf[..end]).expect("utf-8 head");
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .expect("a Content-Length");
        if buf.len() >= end + 4 + length {
            return head[9..12].parse().expect("status code");
        }
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (stack, token) = runtime.block_on(async {
        let stack = Stack::start(claw_tests::SEED, Upstream::Sim).await;
        let token = stack.mint("1password-readonly-agent", "bench-job", None);
        (stack, token)
    });
    let request = format!(
        "GET http://connect.1password.com/v1/vaults/{DEMO_VAULT_ID}/items/{DEMO_DB_ITEM_ID} HTTP/1.1\r\nHost: connect.1password.com\r\nProxy-Authorization: {}\r\n\r\n",
        basic("bench-job", &token)
    );
    let mut stream = TcpStream::connect(stack.addr()).expect("connect to the proxy");
    stream.set_nodelay(true).expect("nodelay");
    let mut buf = Vec::with_capacity(16 * 1024);
    // The first call also resolves the vault name; the loop measures the steady state.
    stream.write_all(request.as_bytes()).expect("write");
    assert_eq!(read_response(&mut stream, &mut buf), 200);

    c.bench_function(
        "read_item through the proxy (keep-alive, receipt durable)",
        |b| {
            b.iter(|| {
                stream.write_all(request.as_bytes()).expect("write");
                black_box(read_response(&mut stream, &mut buf))
            })
        },
    );
    drop(stream);
    drop(stack);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = bench
}
criterion_main!(benches);
