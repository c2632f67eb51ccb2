//! `kill -9` under load. Agents read the DATABASE item through `clawproxy run` over keep-alive
//! connections while the proxy is killed at random moments and restarted on the same data dir.
//! Every 200 an agent saw names a receipt that is in the log; the log verifies end to end;
//! every torn tail a kill left (or one made on purpose, as a crash mid-write leaves) is cut and
//! recorded by exactly one `recovery` receipt; the job's bundle verifies.
//!
//! The kill schedule comes from a seeded generator: `CLAW_CRASH_SEED=<n>` repeats a run.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use connect_sim::demo::DEMO_DB_ITEM_ID;

use crate::support::{self, Cut, Proxy, Rng};

const JOB: &str = "crash-job";
const AGENTS: usize = 4;
const CYCLES: u64 = 20;
const DEFAULT_SEED: u64 = 0x5EED_C1A3;
/// Safety net for a restarted proxy to serve its first 200 (never an assertion on speed).
const SERVE_LIMIT: Duration = Duration::from_secs(120);

/// One answer an agent saw (a whole response head).
#[derive(Clone, Debug)]
struct Seen {
    generation: u64,
    status: u16,
    receipt: Option<String>,
    /// The whole body arrived.
    complete: bool,
    /// For a whole 200: the body is the DATABASE item.
    item: bool,
    text: String,
}

#[derive(Default)]
struct Shared {
    /// Where the proxy listens, with its generation (restart count); `None` while it is down.
    target: Mutex<Option<(u64, SocketAddr)>>,
    stop: AtomicBool,
    seen: Mutex<Vec<Seen>>,
    /// Requests whose connection ended before a whole answer head arrived.
    cut: AtomicU64,
    /// Connection attempts refused or failed.
    refused: AtomicU64,
}

impl Shared {
    fn oks(&self, generation: u64) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.generation == generation && s.status == 200)
            .count()
    }
}

/// Stops the agents when dropped, also when the test fails half way.
struct StopAgents(Arc<Shared>);

impl Drop for StopAgents {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::SeqCst);
    }
}

/// An agent: reads the item again and again over a keep-alive connection, reconnecting to
/// wherever the proxy listens now whenever the connection ends.
fn agent(shared: &Shared, token: &str) {
    let request = support::read_db_item(JOB, token, false);
    while !shared.stop.load(Ordering::SeqCst) {
        let target = *shared.target.lock().unwrap();
        let Some((generation, addr)) = target else {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        };
        let Ok(mut stream) = support::connect(addr) else {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(2));
            continue;
        };
        while !shared.stop.load(Ordering::SeqCst) {
            if stream.write_all(&request).is_err() {
                shared.cut.fetch_add(1, Ordering::Relaxed);
                break;
            }
            let Some(response) = support::read_response(&mut stream) else {
                shared.cut.fetch_add(1, Ordering::Relaxed);
                break;
            };
            let item = response.status == 200
                && response.complete
                && serde_json::from_slice::<serde_json::Value>(&response.body)
                    .is_ok_and(|v| v["id"] == DEMO_DB_ITEM_ID && v["category"] == "DATABASE");
            let again = response.complete && response.header("connection") != Some("close");
            shared.seen.lock().unwrap().push(Seen {
                generation,
                status: response.status,
                receipt: response.header("x-clawproxy-receipt").map(str::to_owned),
                complete: response.complete,
                item,
                text: response.text(),
            });
            if !again {
                break;
            }
        }
    }
}

/// Waits (bounded by a safety net) until an agent got a 200 from this generation's proxy.
fn serving(shared: &Shared, generation: u64, proxy: &Proxy) {
    let deadline = Instant::now() + SERVE_LIMIT;
    while shared.oks(generation) == 0 {
        assert!(
            Instant::now() < deadline,
            "the proxy of generation {generation} served no 200 within {SERVE_LIMIT:?}:\n{}",
            proxy.proc.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn kill_9_under_load_loses_no_receipt_an_agent_saw() {
    let seed = std::env::var("CLAW_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    eprintln!("kill -9 test: seed {seed} (CLAW_CRASH_SEED={seed} repeats the schedule)");
    let mut rng = Rng::new(seed);
    support::bins();
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("claw");
    let (_sim, sim) = support::start_sim(work.path());
    let token = support::prepare(&data, sim, JOB);
    let stderr = work.path().join("clawproxy.stderr");
    let mut proxy = support::start_proxy(&data, &stderr);

    let shared = Arc::new(Shared::default());
    let _stop = StopAgents(shared.clone());
    *shared.target.lock().unwrap() = Some((0, proxy.listen));
    let agents: Vec<_> = (0..AGENTS)
        .map(|_| {
            let shared = shared.clone();
            let token = token.clone();
            std::thread::spawn(move || agent(&shared, &token))
        })
        .collect();

    let mut expected: Vec<Cut> = Vec::new();
    let (mut natural, mut injected) = (0, 0);
    for generation in 0..CYCLES {
        serving(&shared, generation, &proxy);
        std::thread::sleep(Duration::from_millis(rng.range(20, 400)));
        *shared.target.lock().unwrap() = None;
        proxy.proc.kill9();
        if let Some(cut) = support::torn_tail(&data) {
            // The kill landed inside a write.
            natural += 1;
            expected.push(cut);
        } else if rng.next().is_multiple_of(3) {
            expected.push(tear(&data, &mut rng));
            injected += 1;
        }
        proxy = support::start_proxy(&data, &stderr);
        *shared.target.lock().unwrap() = Some((generation + 1, proxy.listen));
    }
    serving(&shared, CYCLES, &proxy);
    shared.stop.store(true, Ordering::SeqCst);
    for agent in agents {
        agent.join().expect("an agent panicked");
    }
    let status = proxy.proc.terminate();
    assert!(
        status.success(),
        "clawproxy stopped with {status}:\n{}",
        proxy.proc.stderr_text()
    );
    let running = started.elapsed();

    // What the agents saw: only 200s (anything else is a failure of the proxy), each naming
    // its own receipt, whole bodies being the item.
    let seen = shared.seen.lock().unwrap().clone();
    let others: Vec<&Seen> = seen.iter().filter(|s| s.status != 200).collect();
    assert!(
        others.is_empty(),
        "{} answers were not 200, e.g. {:?}",
        others.len(),
        others.first()
    );
    let mut ids = BTreeSet::new();
    for s in &seen {
        let id = s
            .receipt
            .as_deref()
            .unwrap_or_else(|| panic!("a 200 without X-Clawproxy-Receipt: {s:?}"));
        assert!(ids.insert(id), "receipt {id} was given twice");
        assert!(
            !s.complete || s.item,
            "a 200 whose body is not the item: {}",
            s.text
        );
    }

    // The log: verifies, holds every receipt an agent saw, one recovery per torn tail.
    let log = support::read_log(&data);
    for id in &ids {
        log.check_released(id, JOB);
    }
    expected.sort();
    assert_eq!(
        log.recoveries(),
        expected,
        "one recovery receipt per torn tail, naming exactly what was cut"
    );
    let unseen = log.ids().len() - ids.len();
    support::bundle_and_verify(&data, JOB, work.path());
    eprintln!(
        "kill -9 test: {CYCLES} kills in {running:.1?}; {} answers seen (all 200), every \
         receipt found among {} in the log ({unseen} no agent saw: answers cut by a kill, \
         recoveries); {} requests cut, {} connects refused; \
         {natural} torn tails from kills, {injected} made on purpose, all recovered; bundle \
         verified; {:.1?} in all",
        seen.len(),
        log.receipts.len(),
        shared.cut.load(Ordering::Relaxed),
        shared.refused.load(Ordering::Relaxed),
        started.elapsed()
    );
}

/// Leaves a torn tail in the last segment, as a crash mid-write would: either a line cut
/// short, or zeros where a line should be (the size grew, the data never reached the disk).
/// Returns the cut the next start must make.
fn tear(data: &std::path::Path, rng: &mut Rng) -> Cut {
    let segment = support::last_segment(data).expect("a segment");
    let offset = std::fs::metadata(&segment).expect("the segment").len();
    let bytes = if rng.next().is_multiple_of(2) {
        let line = support::last_line(&segment)
            .unwrap_or_else(|| br#"{"v":1,"kind":"call","id":"01"#.to_vec());
        let keep = rng.range(1, line.len() as u64) as usize;
        line[..keep].to_vec()
    } else {
        let mut zeros = vec![0u8; rng.range(1, 600) as usize];
        zeros.push(b'\n');
        zeros
    };
    support::append(&segment, &bytes);
    (support::file_name(&segment), offset, bytes.len() as u64)
}
