//! `claw-fleet` against a real server: budgets spent exactly once under concurrency,
//! revocations seen by every feed, concurrent migrations, and failing closed.

use std::sync::Arc;
use std::time::Duration;

use claw_fleet::{Bucket, Fleet, RevocationFeed, Revoked};
use claw_tests::postgres::Postgres;

const NOW: u64 = 1_900_000_000;
const LATER: u64 = NOW + 3_600;

fn hourly(n: u32) -> [Bucket; 1] {
    [Bucket {
        capacity: f64::from(n),
        per_second: f64::from(n) / 3600.0,
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_starting_together_migrate_once() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.url();
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Fleet::connect(&url).await })
        })
        .collect();
    for start in starts {
        start.await.unwrap().expect("every proxy starts");
    }
    // And again, against the migrated database.
    Fleet::connect(&url)
        .await
        .expect("a restart finds the schema current");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_logs_serving_a_job_are_recorded_once_each_and_listed_sorted() {
    let Some(pg) = Postgres::start() else { return };
    let (a, b) = (
        Fleet::connect(&pg.url()).await.unwrap(),
        Fleet::connect(&pg.url()).await.unwrap(),
    );
    assert_eq!(a.job_logs("j").await.unwrap(), Vec::<String>::new());
    let served: Vec<_> = [(&b, "clawproxy/p1/b"), (&a, "clawproxy/p1/a")]
        .into_iter()
        .cycle()
        .take(6)
        .map(|(fleet, log)| {
            let fleet = fleet.clone();
            tokio::spawn(async move { fleet.serve_job("j", log).await })
        })
        .collect();
    for serve in served {
        serve.await.unwrap().unwrap();
    }
    a.serve_job("other", "clawproxy/p1/c").await.unwrap();
    assert_eq!(
        b.job_logs("j").await.unwrap(),
        ["clawproxy/p1/a", "clawproxy/p1/b"]
    );
    pg.kill();
    assert!(a.serve_job("j", "clawproxy/p1/d").await.is_err());
    assert!(a.job_logs("j").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_racing_decisions_from_anywhere_the_first_stands_and_the_rest_read_it() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.url();
    let id = format!("apr_{}", "0a".repeat(16));
    let holder = Fleet::connect(&url).await.unwrap();
    holder
        .hold_approval(&id, r#"{"held":1}"#, LATER * 1000)
        .await
        .unwrap();
    assert_eq!(
        holder.pending_approvals(NOW * 1000).await.unwrap(),
        [r#"{"held":1}"#]
    );
    assert!(
        holder
            .pending_approvals(LATER * 1000)
            .await
            .unwrap()
            .is_empty()
    );
    let deciders: Vec<_> = (0..8)
        .map(|i| {
            let (url, id) = (url.clone(), id.clone());
            tokio::spawn(async move {
                let fleet = Fleet::connect(&url).await.unwrap();
                let mine = format!("decision {i}");
                let standing = fleet.settle_approval(&id, &mine).await.unwrap().unwrap();
                (mine, standing)
            })
        })
        .collect();
    let mut standing = std::collections::BTreeSet::new();
    let mut won = 0;
    for decider in deciders {
        let (mine, stands) = decider.await.unwrap();
        won += usize::from(mine == stands);
        standing.insert(stands);
    }
    assert_eq!((won, standing.len()), (1, 1), "{standing:?}");
    let first = standing.pop_first().unwrap();
    assert_eq!(holder.approval_decision(&id).await.unwrap(), Some(first));
    assert!(
        holder
            .pending_approvals(NOW * 1000)
            .await
            .unwrap()
            .is_empty()
    );
    // Released by its proxy: no longer held, its decision still there.
    holder.release_approval(&id).await.unwrap();
    assert_eq!(holder.held_approval(&id).await.unwrap(), None);
    assert!(holder.approval_decision(&id).await.unwrap().is_some());
    let unknown = format!("apr_{}", "0b".repeat(16));
    assert_eq!(holder.settle_approval(&unknown, "x").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_of_n_admits_exactly_n_across_many_takers() {
    let Some(pg) = Postgres::start() else { return };
    // Two handles, as two proxies would have, each with its own pool.
    let a = Fleet::connect(&pg.url()).await.unwrap();
    let b = Fleet::connect(&pg.url()).await.unwrap();
    let takes: Vec<_> = (0..60)
        .map(|i| {
            let fleet = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { fleet.take("job:job-1:reads", &hourly(25)).await })
        })
        .collect();
    let mut admitted = 0;
    for take in takes {
        let wait = take.await.unwrap().unwrap();
        if wait.is_zero() {
            admitted += 1;
        } else {
            // The next token of an hourly budget of 25 comes in about 144 s.
            assert!(wait > Duration::from_secs(100), "{wait:?}");
        }
    }
    assert_eq!(admitted, 25);
    // Another job's budget is its own.
    assert!(
        a.take("job:job-2:reads", &hourly(25))
            .await
            .unwrap()
            .is_zero()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_budget_size_starts_full_and_burst_refills_per_second() {
    let Some(pg) = Postgres::start() else { return };
    let fleet = Fleet::connect(&pg.url()).await.unwrap();
    let key = "job:job-1:writes";
    assert!(fleet.take(key, &hourly(1)).await.unwrap().is_zero());
    assert!(!fleet.take(key, &hourly(1)).await.unwrap().is_zero());
    // A new contract version with a bigger budget: full again.
    assert!(fleet.take(key, &hourly(2)).await.unwrap().is_zero());
    // Per second, burst 1, 20 per second: a token every 50 ms.
    let fast = [Bucket {
        capacity: 1.0,
        per_second: 20.0,
    }];
    assert!(fleet.take("k2", &fast).await.unwrap().is_zero());
    let wait = fleet.take("k2", &fast).await.unwrap();
    assert!(
        !wait.is_zero() && wait <= Duration::from_millis(50),
        "{wait:?}"
    );
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(fleet.take("k2", &fast).await.unwrap().is_zero());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_feed_sees_every_revocation_even_from_concurrent_writers() {
    let Some(pg) = Postgres::start() else { return };
    let writer = Fleet::connect(&pg.url()).await.unwrap();
    let reader = Fleet::connect(&pg.url()).await.unwrap();
    let feed = RevocationFeed::start(reader.clone()).await.unwrap();
    assert_eq!(feed.check("t1", "job-1", NOW), Ok(None));
    let writes: Vec<_> = (0..40)
        .map(|i| {
            let fleet = writer.clone();
            tokio::spawn(async move {
                fleet
                    .revoke(Revoked::Jti, &format!("t{i}"), "leaked", NOW, LATER)
                    .await
            })
        })
        .collect();
    // Polls interleave with the writers: numbering in commit order means none is skipped.
    for _ in 0..10 {
        feed.poll(&reader).await.unwrap();
    }
    for w in writes {
        w.await.unwrap().unwrap();
    }
    writer
        .revoke(Revoked::Job, "job-9", "done", NOW, LATER)
        .await
        .unwrap();
    feed.poll(&reader).await.unwrap();
    for i in 0..40 {
        assert_eq!(
            feed.check(&format!("t{i}"), "job-1", NOW),
            Ok(Some(Revoked::Jti)),
            "t{i}"
        );
    }
    assert_eq!(feed.check("other", "job-9", NOW), Ok(Some(Revoked::Job)));
    // Past prune_after the entry matches nothing: no token it named is valid any more.
    assert_eq!(feed.check("t0", "job-1", LATER), Ok(None));
    // A revocation is also seen by a feed started afterwards.
    let late = RevocationFeed::start(reader).await.unwrap();
    assert_eq!(late.check("t39", "job-1", NOW), Ok(Some(Revoked::Jti)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_server_calls_fail_and_the_feed_goes_stale_then_recovers() {
    let Some(pg) = Postgres::start() else { return };
    let fleet = Fleet::connect(&pg.url()).await.unwrap();
    let feed = Arc::new(RevocationFeed::start(fleet.clone()).await.unwrap());
    assert_eq!(feed.check("t", "job", NOW), Ok(None));
    pg.kill();
    assert!(fleet.take("k", &hourly(5)).await.is_err());
    assert!(
        fleet
            .revoke(Revoked::Job, "job", "r", NOW, LATER)
            .await
            .is_err()
    );
    tokio::time::sleep(claw_fleet::revocations::STALE_AFTER + Duration::from_millis(300)).await;
    assert!(feed.check("t", "job", NOW).is_err(), "a stale feed refuses");
    pg.resume().unwrap();
    // The pool reopens its connections by itself; the feed confirms again within a poll or two.
    let mut recovered = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if feed.check("t", "job", NOW) == Ok(None) {
            recovered = true;
            break;
        }
    }
    assert!(recovered, "the feed recovers once the server is back");
    assert!(fleet.take("k", &hourly(5)).await.unwrap().is_zero());
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error_at_start() {
    let port = claw_tests::free_port();
    let err = Fleet::connect(&format!("postgres://claw:s3cret@127.0.0.1:{port}/x"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("PostgreSQL"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_a_newer_build_is_refused_not_written() {
    let Some(pg) = Postgres::start() else { return };
    Fleet::connect(&pg.url()).await.unwrap();
    let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(connection);
    client
        .execute("INSERT INTO claw_schema (version) VALUES (99)", &[])
        .await
        .unwrap();
    drop(client);
    let _ = task.await;
    let err = Fleet::connect(&pg.url()).await.unwrap_err().to_string();
    assert!(
        err.contains("version 99") && err.contains("upgrade"),
        "{err}"
    );
}
