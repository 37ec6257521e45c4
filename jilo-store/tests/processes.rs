//! Many OS processes on one database, and a process killed mid-reservation.
//!
//! Each test spawns this test binary again as its children, selecting the same test by name;
//! the `JILO_CHILD` variable tells the copy it is a child and which part to play.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use futures::future::join_all;
use std::collections::HashSet;

use jilo_core::testing::{end_hold, end_hold_at, take_hold};
use jilo_core::{Error, Grant, HoldState, JobId, QuotaStore, Timestamp, UserId};
use jilo_store::StoreUrl;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const CHILD: &str = "JILO_CHILD";
const URL: &str = "JILO_CHILD_URL";
const USER: &str = "JILO_CHILD_USER";
const ARG: &str = "JILO_CHILD_ARG";

fn url_env(url: &StoreUrl) -> String {
    match url {
        StoreUrl::SqliteFile(p) => format!("sqlite://{p}"),
        StoreUrl::Postgres(u) => u.clone(),
        StoreUrl::SqliteMemory => unreachable!("memory databases are not shared"),
    }
}

fn child_role() -> Option<(String, StoreUrl, UserId)> {
    let role = std::env::var(CHILD).ok()?;
    let url = StoreUrl::parse(&std::env::var(URL).ok()?).ok()?;
    Some((role, url, UserId::new(std::env::var(USER).ok()?)))
}

fn spawn_child(test: &str, role: &str, url: &StoreUrl, user: &UserId) -> tokio::process::Child {
    spawn_child_with(test, role, url, user, "")
}

/// A child with one more argument (`JILO_CHILD_ARG`).
fn spawn_child_with(
    test: &str,
    role: &str,
    url: &StoreUrl,
    user: &UserId,
    arg: &str,
) -> tokio::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, role)
        .env(ARG, arg)
        .env(URL, url_env(url))
        .env(USER, user.as_str())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Three grants for `user`: `soon` credits expiring at `soon_ms`, `later` expiring much
/// later, `lasting` that never expire.
fn three_lots(user: &UserId, soon: i64, later: i64, lasting: i64, soon_ms: i64) -> [Grant; 3] {
    let at = Timestamp::from_millis(0);
    [
        Grant::purchase(user.clone(), soon, &format!("{user}-soon"), at)
            .expiring_at(Timestamp::from_millis(soon_ms)),
        Grant::purchase(user.clone(), later, &format!("{user}-later"), at)
            .expiring_at(Timestamp::from_millis(soon_ms * 1_000)),
        Grant::signup(user.clone(), lasting, at),
    ]
}

/// Child: 25 concurrent reservations of 1 credit; prints what it got.
async fn reserve_25(url: &StoreUrl, user: &UserId) {
    // 8 connections a process keeps 4 children well inside Postgres's connection limit while
    // still racing 32 transactions at once.
    let options = jilo_store::SqlStoreOptions {
        max_connections: 8,
        ..jilo_store::SqlStoreOptions::default()
    };
    let store = jilo_store::SqlStore::connect(url, options).await.unwrap();
    store.migrate().await.unwrap();
    let at = Timestamp::from_millis(0);
    let results = join_all((0..25).map(|_| take_hold(&store, user, 1, at, None))).await;
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    let insufficient = results
        .iter()
        .filter(|r| matches!(r, Err(Error::Insufficient { .. })))
        .count();
    println!();
    println!("RESULT accepted={accepted} insufficient={insufficient}");
}

/// Child: hold and settle or refund in a loop until killed, printing each committed hold with
/// the end it is about to get, and each committed end.
async fn reserve_forever(url: &StoreUrl, user: &UserId) {
    let store = common::open(url).await;
    for i in 0u64.. {
        // Time moves a millisecond a hold; each hold ends 100 ms after it began, so holds
        // drawn from the lot expiring at 50 ms and refunded after it lapse.
        let at = Timestamp::from_millis(i as i64);
        let credits = 1 + (i % 3) as i64;
        if let Ok((job, _)) = take_hold(&store, user, credits, at, None).await {
            let to = if i % 2 == 0 {
                HoldState::Settled
            } else {
                HoldState::Refunded
            };
            println!("HELD {} {}", job.id, to.as_str());
            let end = Some(Timestamp::from_millis(i as i64 + 100));
            if end_hold_at(&store, &job.id, to, end).await.is_ok() {
                println!("ENDED {}", job.id);
            }
        }
    }
}

async fn four_processes_share_one_quota(url: StoreUrl, test: &str) {
    if let Some((role, url, user)) = child_role() {
        assert_eq!(role, "reserve-25");
        reserve_25(&url, &user).await;
        return;
    }
    let store = common::open(&url).await;
    let user = UserId::new(format!("procs-{}", uuid::Uuid::new_v4().simple()));
    // The 10 credits come from three lots.
    for grant in three_lots(&user, 4, 3, 3, 1_000_000_000) {
        store.grant(&grant).await.unwrap();
    }
    let children: Vec<_> = (0..4)
        .map(|_| spawn_child(test, "reserve-25", &url, &user))
        .collect();
    let mut accepted = 0;
    let mut insufficient = 0;
    for child in children {
        let out = child.wait_with_output().await.unwrap();
        assert!(out.status.success(), "a child failed");
        let text = String::from_utf8(out.stdout).unwrap();
        // The test harness may print its own words before ours on the same line.
        let line = text
            .lines()
            .find_map(|l| l.find("RESULT ").map(|i| &l[i..]))
            .expect("a RESULT line");
        for part in line.split_whitespace().skip(1) {
            let (k, v) = part.split_once('=').unwrap();
            let v: usize = v.parse().unwrap();
            match k {
                "accepted" => accepted += v,
                "insufficient" => insufficient += v,
                _ => {}
            }
        }
    }
    assert_eq!(accepted, 10, "exactly 10 holds across 4 processes");
    assert_eq!(insufficient, 90, "the other 90 refused as Insufficient");
    let b = store.balance(&user).await.unwrap();
    assert_eq!((b.available, b.held), (0, 10), "balance exactly 0");
    common::check_ledger(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_four_processes_share_one_quota() {
    let url = match child_role() {
        Some((_, url, _)) => url,
        None => common::sqlite_file(),
    };
    four_processes_share_one_quota(url, "sqlite_four_processes_share_one_quota").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_four_processes_share_one_quota() {
    let url = match child_role() {
        Some((_, url, _)) => url,
        None => match common::postgres_database().await {
            Some(u) => u,
            None => return,
        },
    };
    four_processes_share_one_quota(url.clone(), "postgres_four_processes_share_one_quota").await;
    if child_role().is_none() {
        common::drop_postgres_database(&url).await;
    }
}

async fn killed_mid_reservation(url: StoreUrl, test: &str) {
    if let Some((role, url, user)) = child_role() {
        assert_eq!(role, "reserve-forever");
        reserve_forever(&url, &user).await;
        return;
    }
    let store = common::open(&url).await;
    let user = UserId::new(format!("crash-{}", uuid::Uuid::new_v4().simple()));
    // Three lots: one expiring 50 ms into the child's clock (its holds then lapse or expire),
    // one much later, one lasting.
    for grant in three_lots(&user, 300_000, 300_000, 400_000, 50) {
        store.grant(&grant).await.unwrap();
    }
    let mut child = spawn_child(test, "reserve-forever", &url, &user);
    // Lines may start with the harness's own words; find ours in them. Each committed hold
    // and the end it is to get; then whether that end committed.
    let mut held: Vec<(JobId, HoldState)> = Vec::new();
    let mut ended: HashSet<JobId> = HashSet::new();
    let mut read = |line: &str| {
        if let Some(i) = line.find("HELD ") {
            let mut parts = line[i + 5..].split_whitespace();
            let job = JobId::new(parts.next().unwrap_or_default());
            let to = match parts.next() {
                Some("settled") => HoldState::Settled,
                _ => HoldState::Refunded,
            };
            held.push((job, to));
        } else if let Some(i) = line.find("ENDED ") {
            ended.insert(JobId::new(line[i + 6..].trim()));
        }
    };
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Let it work until it has made progress (readiness, not a time: a loaded machine only
    // makes it take longer), then kill it (SIGKILL) wherever it is. The deadline only keeps
    // a stuck child from hanging the test.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let (mut holds_seen, mut ends_seen) = (0, 0);
    while holds_seen <= 10 || ends_seen == 0 {
        match tokio::time::timeout_at(deadline, lines.next_line()).await {
            Ok(Ok(Some(line))) => {
                holds_seen += usize::from(line.contains("HELD "));
                ends_seen += usize::from(line.contains("ENDED "));
                read(&line);
            }
            _ => break,
        }
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    while let Ok(Some(line)) = lines.next_line().await {
        read(&line);
    }
    let ended_count = ended.len();
    let ended = ended;
    assert!(
        held.len() > 10,
        "the child made progress before it was killed ({} holds)",
        held.len()
    );
    assert!(ended_count > 0);
    eprintln!(
        "killed the child after {} committed holds, {ended_count} ended",
        held.len()
    );

    // After a restart: every hold the child saw committed is there in the state it last saw
    // committed (an end it did not see commit may or may not have), none twice, and the
    // ledger invariant holds.
    let reopened = common::open(&url).await;
    for (job, to) in &held {
        let hold = reopened
            .hold(job)
            .await
            .unwrap_or_else(|e| panic!("hold {job} was lost: {e}"));
        if ended.contains(job) {
            assert_eq!(hold.state, *to, "hold {job} ended as the child saw");
        } else {
            assert!(
                hold.state == HoldState::Held || hold.state == *to,
                "hold {job} is {:?}, neither held nor {to:?}",
                hold.state
            );
        }
    }
    common::check_ledger(&reopened).await;
    let b = reopened.balance(&user).await.unwrap();
    assert!(b.is_consistent());
    assert!(
        b.held <= 3,
        "at most the one in-flight hold stays open: {b:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_a_killed_process() {
    let url = match child_role() {
        Some((_, url, _)) => url,
        None => common::sqlite_file(),
    };
    killed_mid_reservation(url, "sqlite_survives_a_killed_process").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_survives_a_killed_process() {
    let url = match child_role() {
        Some((_, url, _)) => url,
        None => match common::postgres_database().await {
            Some(u) => u,
            None => return,
        },
    };
    killed_mid_reservation(url.clone(), "postgres_survives_a_killed_process").await;
    if child_role().is_none() {
        common::drop_postgres_database(&url).await;
    }
}

/// Reads a child's `RESULT k=v …` line into counts.
async fn child_counts(child: tokio::process::Child) -> std::collections::HashMap<String, usize> {
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "a child failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.find("RESULT ").map(|i| l[i..].to_owned()))
        .expect("a RESULT line");
    line.split_whitespace()
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap()))
        .collect()
}

/// The day every capped hold of these tests falls on.
const CAP_DAY: Timestamp = Timestamp::from_millis(20_000 * 86_400_000);

/// Child: 5 concurrent holds of 1 under a daily cap of 2.
async fn capped_5(url: &StoreUrl, user: &UserId) {
    let options = jilo_store::SqlStoreOptions {
        max_connections: 8,
        ..jilo_store::SqlStoreOptions::default()
    };
    let store = jilo_store::SqlStore::connect(url, options).await.unwrap();
    let results = join_all((0..5).map(|_| take_hold(&store, user, 1, CAP_DAY, Some(2)))).await;
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    let capped = results
        .iter()
        .filter(|r| matches!(r, Err(Error::DailyCapReached { cap: 2 })))
        .count();
    println!();
    println!("RESULT accepted={accepted} capped={capped}");
}

async fn four_processes_share_one_daily_cap(url: StoreUrl, test: &str) {
    if let Some((role, url, user)) = child_role() {
        assert_eq!(role, "capped-5");
        capped_5(&url, &user).await;
        return;
    }
    let store = common::open(&url).await;
    let user = UserId::new(format!("capped-{}", uuid::Uuid::new_v4().simple()));
    store
        .grant(&Grant::signup(user.clone(), 100, CAP_DAY))
        .await
        .unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| spawn_child(test, "capped-5", &url, &user))
        .collect();
    let (mut accepted, mut capped) = (0, 0);
    for child in children {
        let counts = child_counts(child).await;
        accepted += counts["accepted"];
        capped += counts["capped"];
    }
    assert_eq!(
        (accepted, capped),
        (2, 18),
        "20 holds from 4 processes under a cap of 2"
    );
    assert_eq!(store.balance(&user).await.unwrap().held, 2);
    common::check_ledger(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_four_processes_share_one_daily_cap() {
    let url = match child_role() {
        Some((_, url, _)) => url,
        None => common::sqlite_file(),
    };
    four_processes_share_one_daily_cap(url, "sqlite_four_processes_share_one_daily_cap").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_four_processes_share_one_daily_cap() {
    let url = match child_role() {
        Some((_, url, _)) => url,
        None => match common::postgres_database().await {
            Some(u) => u,
            None => return,
        },
    };
    four_processes_share_one_daily_cap(url.clone(), "postgres_four_processes_share_one_daily_cap")
        .await;
    if child_role().is_none() {
        common::drop_postgres_database(&url).await;
    }
}

/// Child: ends each listed hold one way (settle or refund by role), four tasks per hold.
async fn end_all(url: &StoreUrl, to: HoldState, jobs: &str) {
    let store = common::open(url).await;
    let ids: Vec<JobId> = jobs.split(',').map(JobId::new).collect();
    let results = join_all(
        ids.iter()
            .flat_map(|id| (0..4).map(move |_| id))
            .map(|id| end_hold(&store, id, to)),
    )
    .await;
    let ended = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(Error::NotAllowed { .. })))
        .count();
    assert_eq!(
        ended + refused,
        results.len(),
        "only ends or refusals: {results:?}"
    );
    println!();
    println!("RESULT ended={ended} refused={refused}");
}

async fn two_processes_race_the_ends_of_holds(url: StoreUrl, test: &str) {
    if let Some((role, url, _)) = child_role() {
        let to = if role == "settle-all" {
            HoldState::Settled
        } else {
            HoldState::Refunded
        };
        end_all(&url, to, &std::env::var(ARG).unwrap()).await;
        return;
    }
    let store = common::open(&url).await;
    let user = UserId::new(format!("ends-{}", uuid::Uuid::new_v4().simple()));
    let at = Timestamp::from_millis(0);
    store
        .grant(&Grant::signup(user.clone(), 1_000, at))
        .await
        .unwrap();
    let mut jobs = Vec::new();
    for _ in 0..20 {
        jobs.push(take_hold(&store, &user, 3, at, None).await.unwrap().0.id);
    }
    let list = jobs
        .iter()
        .map(|j| j.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let settle = spawn_child_with(test, "settle-all", &url, &user, &list);
    let refund = spawn_child_with(test, "refund-all", &url, &user, &list);
    let (settle, refund) = futures::join!(child_counts(settle), child_counts(refund));
    let mut settled = 0;
    for job in &jobs {
        let hold = store.hold(job).await.unwrap();
        assert_ne!(hold.state, HoldState::Held, "every raced hold ended");
        if hold.state == HoldState::Settled {
            settled += 1;
        }
    }
    // Each hold: the winning way's four calls succeed (one ends it, three find it so ended),
    // the other way's four are refused.
    assert_eq!(settle["ended"], 4 * settled, "{settle:?}");
    assert_eq!(refund["ended"], 4 * (jobs.len() - settled), "{refund:?}");
    assert_eq!(settle["refused"] + refund["refused"], 4 * jobs.len());
    eprintln!(
        "{settled} of {} raced holds settled, the rest refunded",
        jobs.len()
    );
    let b = store.balance(&user).await.unwrap();
    assert_eq!(b.held, 0);
    assert_eq!(b.spent, 3 * settled as i64, "each hold ended once: {b:?}");
    assert!(b.is_consistent());
    common::check_ledger(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_processes_race_the_ends_of_holds() {
    let url = match child_role() {
        Some((_, url, _)) => url,
        None => common::sqlite_file(),
    };
    two_processes_race_the_ends_of_holds(url, "sqlite_two_processes_race_the_ends_of_holds").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_processes_race_the_ends_of_holds() {
    let url = match child_role() {
        Some((_, url, _)) => url,
        None => match common::postgres_database().await {
            Some(u) => u,
            None => return,
        },
    };
    two_processes_race_the_ends_of_holds(
        url.clone(),
        "postgres_two_processes_race_the_ends_of_holds",
    )
    .await;
    if child_role().is_none() {
        common::drop_postgres_database(&url).await;
    }
}

/// Child: writes due expiries 20 times over.
async fn expire_20(url: &StoreUrl) {
    let store = common::open(url).await;
    let mut lots = 0;
    for _ in 0..20 {
        lots += store
            .expire_credits(Timestamp::from_millis(2_000))
            .await
            .unwrap();
    }
    println!();
    println!("RESULT expired={lots}");
}

async fn two_processes_expire_each_lot_once(url: StoreUrl, test: &str) {
    if let Some((role, url, _)) = child_role() {
        assert_eq!(role, "expire");
        expire_20(&url).await;
        return;
    }
    let store = common::open(&url).await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let users: Vec<UserId> = (0..40)
        .map(|i| UserId::new(format!("expiry-{run}-{i}")))
        .collect();
    for user in &users {
        for grant in three_lots(user, 5, 7, 1, 1_000) {
            store.grant(&grant).await.unwrap();
        }
    }
    let children: Vec<_> = (0..2)
        .map(|_| spawn_child(test, "expire", &url, &users[0]))
        .collect();
    let mut reported = 0;
    for child in children {
        let counts = child_counts(child).await;
        reported += counts.get("expired").copied().unwrap_or(0);
    }
    assert_eq!(
        reported,
        users.len(),
        "the two processes together expired each user's due lot once"
    );
    for user in &users {
        let expiries = common::int(
            &store,
            "SELECT COUNT(*) FROM jilo_ledger WHERE user_id = $1 AND kind = 'expire'",
            &[user.as_str().into()],
        )
        .await;
        assert_eq!(expiries, 1, "{user}: one expiry entry for its one due lot");
        let b = store.balance(user).await.unwrap();
        assert_eq!((b.available, b.expired), (8, 5), "{user}");
    }
    common::check_ledger(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_processes_expire_each_lot_once() {
    let url = match child_role() {
        Some((_, url, _)) => url,
        None => common::sqlite_file(),
    };
    two_processes_expire_each_lot_once(url, "sqlite_two_processes_expire_each_lot_once").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_processes_expire_each_lot_once() {
    let url = match child_role() {
        Some((_, url, _)) => url,
        None => match common::postgres_database().await {
            Some(u) => u,
            None => return,
        },
    };
    two_processes_expire_each_lot_once(url.clone(), "postgres_two_processes_expire_each_lot_once")
        .await;
    if child_role().is_none() {
        common::drop_postgres_database(&url).await;
    }
}
