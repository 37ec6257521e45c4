//! The [`PublicationStore`] rules, one function each. Each uses random job ids, so it runs on
//! a store holding other data. [`publication_store_suite`] runs them all.

use crate::error::Error;
use crate::ids::{JobId, Timestamp, UserId};
use crate::publish::{
    HeldPublication, Privacy, Publication, PublicationBegun, PublicationClaim, PublicationKey,
    PublicationLease, PublicationOutcome, PublicationState, PublishMetadata, PublishRequest,
    PublishedVideo, StatsReading, UploadCheckpoint, UploadSession, VideoStats,
};
use crate::traits::PublicationStore;

use super::support::{rules, run_id};

fn request(job: &JobId, channel: &str, title: &str) -> PublishRequest {
    PublishRequest {
        user: UserId::new("publisher"),
        job: job.clone(),
        channel_id: channel.to_owned(),
        media_key: format!("videos/publisher/{job}.mp4"),
        total_bytes: 3 * 262_144 + 17,
        content_type: "video/mp4".to_owned(),
        metadata: PublishMetadata {
            title: title.to_owned(),
            description: "描述 with 'quotes'".to_owned(),
            tags: vec!["ai".to_owned(), "short film".to_owned()],
            category_id: Some("22".to_owned()),
            privacy: Privacy::Private,
            publish_at: Some(Timestamp::from_millis(1_900_000_000_000)),
            playlist_id: Some("PL123".to_owned()),
            thumbnail_key: None,
        },
        session: None,
    }
}

/// `job`'s record on the suite's channel as the holder of `token` writes it.
fn held(job: &JobId, token: &str) -> HeldPublication {
    HeldPublication {
        key: PublicationKey::new(job.clone(), CHANNEL),
        token: token.to_owned(),
    }
}

/// Saves `session` as the holder of `token` on `job`'s record, the lease kept until `until`.
async fn save<S: PublicationStore + ?Sized>(
    store: &S,
    job: &JobId,
    token: &str,
    session: UploadSession,
    until: i64,
) -> crate::Result<()> {
    store
        .save_upload(&UploadCheckpoint {
            held: held(job, token),
            session,
            until: Timestamp::from_millis(until),
        })
        .await
}

fn lease(token: &str, until: i64) -> PublicationLease {
    PublicationLease {
        token: token.to_owned(),
        until: Timestamp::from_millis(until),
    }
}

fn session(uri: &str, confirmed: u64) -> UploadSession {
    UploadSession {
        uri: uri.to_owned(),
        confirmed,
    }
}

async fn due<S: PublicationStore + ?Sized>(store: &S, job: &JobId, before: i64) -> bool {
    store
        .publications_due_for_stats(Timestamp::from_millis(before), 10_000)
        .await
        .unwrap_or_else(|e| panic!("listing due statistics failed: {e}"))
        .iter()
        .any(|p| &p.job == job)
}

/// Checks the [`PublicationStore`] contract: a record is written once and a second begin
/// returns the first; one lease holder at a time, a lapsed lease can be taken over and the old
/// holder's writes are then [`Error::LostRace`]; the session and confirmed bytes are kept (a
/// smaller count within the same session does not go back, a new session replaces it); a
/// published record keeps its video, is not stalled, and is due for statistics until they are
/// read; a failed one is restarted by the next begin with the new metadata. Uses random job
/// ids, so it can run on a store holding other data. Panics naming the broken rule.
pub async fn publication_store_suite<S: PublicationStore + ?Sized>(store: &S) {
    rules!(store, "publications":
        a_publication_is_begun_once,
        one_holder_at_a_time_keeps_the_session,
        a_lapsed_lease_is_taken_over_and_its_holder_locked_out,
        statistics_are_due_until_read,
        a_failure_restarts_on_the_next_begin,
    );
}

const CHANNEL: &str = "UCsuite";
const T0: i64 = 1_800_000_000_000;

/// Begins the publication of `job` titled `title` at `T0`.
async fn begun<S: PublicationStore + ?Sized>(store: &S, job: &JobId, title: &str) {
    store
        .begin_publication(&Publication::new(
            &request(job, CHANNEL, title),
            Timestamp::from_millis(T0),
        ))
        .await
        .unwrap_or_else(|e| panic!("begin failed: {e}"));
}

/// Claims `job`'s publication with `lease` at `now`.
async fn claimed<S: PublicationStore + ?Sized>(
    store: &S,
    job: &JobId,
    lease: &PublicationLease,
    now: i64,
) -> Publication {
    store
        .claim_publication(&PublicationClaim {
            key: PublicationKey::new(job.clone(), CHANNEL),
            lease: lease.clone(),
            now: Timestamp::from_millis(now),
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("claim failed"))
}

/// A record is written once: none before a begin, the first begin writes it as given, a
/// second begin writes nothing and returns the first, and of many first begins at once
/// (processes publishing the same job) one writes.
pub async fn a_publication_is_begun_once<S: PublicationStore + ?Sized>(store: &S) {
    let run = run_id();
    let job = JobId::new(format!("{run}-job"));
    let channel = CHANNEL;
    let t0 = T0;
    assert!(
        store
            .publication(&PublicationKey::new(job.clone(), channel))
            .await
            .ok()
            .flatten()
            .is_none(),
        "no record before begin"
    );
    let first = Publication::new(
        &request(&job, channel, "First title"),
        Timestamp::from_millis(t0),
    );
    let PublicationBegun {
        publication: written,
        written: created,
    } = store
        .begin_publication(&first)
        .await
        .unwrap_or_else(|e| panic!("begin failed: {e}"));
    assert!(created, "the first begin writes the record");
    assert_eq!(written, first, "the record reads back as written");
    let PublicationBegun {
        publication: again,
        written: created,
    } = store
        .begin_publication(&Publication::new(
            &request(&job, channel, "Second title"),
            Timestamp::from_millis(t0 + 5),
        ))
        .await
        .unwrap_or_else(|e| panic!("a second begin failed: {e}"));
    assert!(!created, "a second begin writes nothing");
    assert_eq!(
        again.metadata.title, "First title",
        "a second begin returns the first record"
    );

    // Many first begins at once (processes publishing the same job): one writes.
    let raced = JobId::new(format!("{run}-raced"));
    let begins = futures::future::join_all((0..8).map(|i| {
        let record = Publication::new(
            &request(&raced, channel, &format!("Title {i}")),
            Timestamp::from_millis(t0),
        );
        async move { store.begin_publication(&record).await }
    }))
    .await;
    let written = begins
        .iter()
        .filter(|b| matches!(b, Ok(PublicationBegun { written: true, .. })))
        .count();
    assert!(
        begins.iter().all(|b| b.is_ok()),
        "concurrent begins all answer: {:?}",
        begins.iter().filter(|b| b.is_err()).collect::<Vec<_>>()
    );
    assert_eq!(
        written, 1,
        "one of many concurrent begins writes the record"
    );
}

/// One lease holder at a time: a claim counts an attempt, a held lease cannot be claimed and
/// is not stalled; the session and confirmed bytes are kept (a smaller count within the same
/// session does not go back), saving progress renews the lease, and only the holder renews.
pub async fn one_holder_at_a_time_keeps_the_session<S: PublicationStore + ?Sized>(store: &S) {
    let run = run_id();
    let job = JobId::new(format!("{run}-job"));
    let (channel, t0) = (CHANNEL, T0);
    begun(store, &job, "First title").await;
    let a = lease("token-a", t0 + 60_000);
    let claimed = store
        .claim_publication(&PublicationClaim {
            key: PublicationKey::new(job.clone(), channel),
            lease: a.clone(),
            now: Timestamp::from_millis(t0 + 10),
        })
        .await
        .unwrap_or_else(|e| panic!("claim failed: {e}"));
    let claimed = claimed.unwrap_or_else(|| panic!("a fresh record can be claimed"));
    assert_eq!(claimed.attempts, 1, "a claim counts an attempt");
    assert_eq!(claimed.lease, Some(a.clone()));
    let b = lease("token-b", t0 + 120_000);
    assert!(
        store
            .claim_publication(&PublicationClaim {
                key: PublicationKey::new(job.clone(), channel),
                lease: b.clone(),
                now: Timestamp::from_millis(t0 + 20)
            })
            .await
            .ok()
            .flatten()
            .is_none(),
        "a held lease cannot be claimed"
    );
    assert!(
        store
            .stalled_publications(Timestamp::from_millis(t0 + 20), 1000)
            .await
            .unwrap_or_default()
            .iter()
            .all(|p| p.job != job),
        "a held upload is not stalled"
    );

    // The session and its bytes.
    let uri = format!("http://127.0.0.1:1/upload?upload_id={run}");
    save(store, &job, "token-a", session(&uri, 0), T0 + 90_000)
        .await
        .unwrap_or_else(|e| panic!("keeping the session failed: {e}"));
    save(store, &job, "token-a", session(&uri, 524_288), T0 + 90_000)
        .await
        .unwrap_or_else(|e| panic!("keeping progress failed: {e}"));
    save(store, &job, "token-a", session(&uri, 262_144), T0 + 90_000)
        .await
        .unwrap_or_else(|e| panic!("keeping progress failed: {e}"));
    let read = store
        .publication(&PublicationKey::new(job.clone(), channel))
        .await
        .ok()
        .flatten();
    assert_eq!(
        read.as_ref().and_then(|p| p.session.clone()),
        Some(session(&uri, 524_288)),
        "confirmed bytes do not go back within a session"
    );
    assert_eq!(
        read.and_then(|p| p.lease).map(|l| l.until),
        Some(Timestamp::from_millis(t0 + 90_000)),
        "saving progress renews the lease"
    );

    store
        .renew_publication(&held(&job, "token-a"), Timestamp::from_millis(t0 + 95_000))
        .await
        .unwrap_or_else(|e| panic!("renewing failed: {e}"));
    assert!(
        matches!(
            store
                .renew_publication(&held(&job, "token-x"), Timestamp::from_millis(t0 + 1))
                .await,
            Err(Error::LostRace { .. })
        ),
        "only the holder renews"
    );
    assert!(
        store
            .stalled_publications(Timestamp::from_millis(t0 + 94_000), 1000)
            .await
            .unwrap_or_default()
            .iter()
            .all(|p| p.job != job),
        "a renewed lease holds"
    );
    // The holder may also bring the lease's end back; the upload is stalled from then.
    store
        .renew_publication(&held(&job, "token-a"), Timestamp::from_millis(t0 + 90_000))
        .await
        .unwrap_or_else(|e| panic!("renewing failed: {e}"));
    assert!(
        store
            .stalled_publications(Timestamp::from_millis(t0 + 90_000), 1000)
            .await
            .unwrap_or_else(|e| panic!("listing stalled uploads failed: {e}"))
            .iter()
            .any(|p| p.job == job),
        "a lease renewed to an earlier end lapses then"
    );
}

/// A lapsed lease makes the upload stalled and can be taken over; the new holder sees the
/// session; the old holder's progress and end are [`Error::LostRace`]; a new session replaces
/// the old one; a published record keeps its video, frees its lease, is returned by a later
/// begin and cannot be claimed; notes are added once each.
pub async fn a_lapsed_lease_is_taken_over_and_its_holder_locked_out<
    S: PublicationStore + ?Sized,
>(
    store: &S,
) {
    let run = run_id();
    let job = JobId::new(format!("{run}-job"));
    let (channel, t0) = (CHANNEL, T0);
    begun(store, &job, "First title").await;
    claimed(store, &job, &lease("token-a", t0 + 60_000), t0 + 10).await;
    let uri = format!("http://127.0.0.1:1/upload?upload_id={run}");
    save(store, &job, "token-a", session(&uri, 524_288), T0 + 90_000)
        .await
        .unwrap_or_else(|e| panic!("keeping progress failed: {e}"));
    let b = lease("token-b", t0 + 120_000);
    let stalled = store
        .stalled_publications(Timestamp::from_millis(t0 + 90_000), 1000)
        .await
        .unwrap_or_else(|e| panic!("listing stalled uploads failed: {e}"));
    assert!(
        stalled.iter().any(|p| p.job == job),
        "a lapsed lease makes the upload stalled"
    );
    let taken = store
        .claim_publication(&PublicationClaim {
            key: PublicationKey::new(job.clone(), channel),
            lease: b.clone(),
            now: Timestamp::from_millis(t0 + 90_000),
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("a lapsed lease can be taken over"));
    assert_eq!(taken.attempts, 2);
    assert_eq!(
        taken.session,
        Some(session(&uri, 524_288)),
        "the new holder sees the session"
    );
    let late = save(store, &job, "token-a", session(&uri, 786_432), T0 + 200_000).await;
    assert!(
        matches!(late, Err(Error::LostRace { .. })),
        "the old holder's progress is refused: {late:?}"
    );
    let new_uri = format!("{uri}-restarted");
    save(store, &job, "token-b", session(&new_uri, 0), T0 + 200_000)
        .await
        .unwrap_or_else(|e| panic!("a new session failed: {e}"));
    assert_eq!(
        store
            .publication(&PublicationKey::new(job.clone(), channel))
            .await
            .ok()
            .flatten()
            .and_then(|p| p.session),
        Some(session(&new_uri, 0)),
        "a new session replaces the old one and its count"
    );
    let published = PublishedVideo {
        video_id: "abcdefghijk".to_owned(),
        url: "https://www.youtube.com/watch?v=abcdefghijk".to_owned(),
        // Kept on the record, as the notes are.
        locked_private: true,
        warnings: vec!["the thumbnail was refused".to_owned()],
    };
    let outcome = PublicationOutcome::Published {
        video: published.clone(),
        at: Timestamp::from_millis(t0 + 300_000),
    };
    let stale_end = store
        .finish_publication(&held(&job, "token-a"), &outcome)
        .await;
    assert!(
        matches!(stale_end, Err(Error::LostRace { .. })),
        "only the holder ends the record: {stale_end:?}"
    );
    let done = store
        .finish_publication(&held(&job, "token-b"), &outcome)
        .await
        .unwrap_or_else(|e| panic!("finishing failed: {e}"));
    assert_eq!(done.state, PublicationState::Published);
    assert_eq!(done.published(), Some(published.clone()));
    assert_eq!(
        done.published_at,
        Some(Timestamp::from_millis(t0 + 300_000))
    );
    assert!(done.lease.is_none(), "the end frees the lease");
    let PublicationBegun {
        publication: after,
        written: created,
    } = store
        .begin_publication(&Publication::new(
            &request(&job, channel, "Third"),
            Timestamp::from_millis(t0 + 400_000),
        ))
        .await
        .unwrap_or_else(|e| panic!("begin after publishing failed: {e}"));
    assert!(!created, "publishing twice writes nothing");
    assert_eq!(
        after.published(),
        Some(published),
        "publishing twice returns the first publication"
    );
    assert!(
        store
            .claim_publication(&PublicationClaim {
                key: PublicationKey::new(job.clone(), channel),
                lease: lease("token-c", t0 + 999_000),
                now: Timestamp::from_millis(t0 + 400_000)
            })
            .await
            .ok()
            .flatten()
            .is_none(),
        "a published record cannot be claimed"
    );

    store
        .note_publication(
            &PublicationKey::new(job.clone(), channel),
            &[
                "the playlist is full".to_owned(),
                "the thumbnail was refused".to_owned(),
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("noting failed: {e}"));
    assert_eq!(
        store
            .publication(&PublicationKey::new(job.clone(), channel))
            .await
            .ok()
            .flatten()
            .map(|p| p.notes),
        Some(vec![
            "the thumbnail was refused".to_owned(),
            "the playlist is full".to_owned()
        ]),
        "notes are added once each, after the upload's"
    );
}

/// A published record never read is due for statistics; statistics read back as kept; a
/// record just read is not due, one read before the cut is.
pub async fn statistics_are_due_until_read<S: PublicationStore + ?Sized>(store: &S) {
    let run = run_id();
    let job = JobId::new(format!("{run}-job"));
    let (channel, t0) = (CHANNEL, T0);
    begun(store, &job, "First title").await;
    claimed(store, &job, &lease("token-a", t0 + 60_000), t0 + 10).await;
    store
        .finish_publication(
            &held(&job, "token-a"),
            &PublicationOutcome::Published {
                video: PublishedVideo {
                    video_id: "abcdefghijk".to_owned(),
                    url: "https://www.youtube.com/watch?v=abcdefghijk".to_owned(),
                    locked_private: false,
                    warnings: Vec::new(),
                },
                at: Timestamp::from_millis(t0 + 300_000),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("finishing failed: {e}"));
    assert!(
        due(store, &job, t0).await,
        "a published video never read is due"
    );
    let stats = VideoStats {
        views: 12_345_678_901,
        likes: 42,
        comments: 7,
    };
    store
        .record_stats(&StatsReading {
            key: PublicationKey::new(job.clone(), channel),
            stats,
            at: Timestamp::from_millis(t0 + 500_000),
        })
        .await
        .unwrap_or_else(|e| panic!("keeping statistics failed: {e}"));
    assert_eq!(
        store
            .publication(&PublicationKey::new(job.clone(), channel))
            .await
            .ok()
            .flatten()
            .and_then(|p| p.stats),
        Some((stats, Timestamp::from_millis(t0 + 500_000))),
        "statistics read back as kept"
    );
    assert!(
        !due(store, &job, t0 + 500_000).await,
        "just read is not due"
    );
    assert!(
        due(store, &job, t0 + 500_001).await,
        "read before the cut is due"
    );
}

/// A failed publication has no statistics and starts over on the next begin, with the new
/// metadata and its own attempts; a release by another token changes nothing, the holder's
/// frees the lease at once; an unknown record cannot be claimed.
pub async fn a_failure_restarts_on_the_next_begin<S: PublicationStore + ?Sized>(store: &S) {
    let run = run_id();
    let (channel, t0) = (CHANNEL, T0);
    let a = lease("token-a", t0 + 60_000);
    let stats = VideoStats {
        views: 12_345_678_901,
        likes: 42,
        comments: 7,
    };
    let failing = JobId::new(format!("{run}-failing"));
    store
        .begin_publication(&Publication::new(
            &request(&failing, channel, "Will fail"),
            Timestamp::from_millis(t0),
        ))
        .await
        .unwrap_or_else(|e| panic!("begin failed: {e}"));
    store
        .claim_publication(&PublicationClaim {
            key: PublicationKey::new(failing.clone(), channel),
            lease: a.clone(),
            now: Timestamp::from_millis(t0),
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("claim failed"));
    let failed = store
        .finish_publication(
            &held(&failing, "token-a"),
            &PublicationOutcome::Failed {
                reason: "the channel's daily upload limit".to_owned(),
                at: Timestamp::from_millis(t0 + 1),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("failing failed: {e}"));
    assert_eq!(failed.state, PublicationState::Failed);
    assert_eq!(failed.notes, vec!["the channel's daily upload limit"]);
    assert!(
        matches!(
            store
                .record_stats(&StatsReading {
                    key: PublicationKey::new(failing.clone(), channel),
                    stats,
                    at: Timestamp::from_millis(t0 + 2)
                })
                .await,
            Err(Error::NotAllowed { .. })
        ),
        "a failed publication has no statistics"
    );
    let PublicationBegun {
        publication: restarted,
        written: created,
    } = store
        .begin_publication(&Publication::new(
            &request(&failing, channel, "Try again"),
            Timestamp::from_millis(t0 + 10),
        ))
        .await
        .unwrap_or_else(|e| panic!("restart failed: {e}"));
    assert!(created, "a failed publication starts over");
    assert_eq!(restarted.state, PublicationState::Uploading);
    assert_eq!(restarted.metadata.title, "Try again");
    assert_eq!(
        restarted.attempts, 0,
        "a restart counts its own attempts (the failed try's gave up)"
    );
    assert!(restarted.lease.is_none() && restarted.session.is_none());
    assert!(restarted.notes.is_empty());
    assert_eq!(restarted.created_at, Timestamp::from_millis(t0));
    store
        .release_publication(&held(&failing, "nobody"))
        .await
        .unwrap_or_else(|e| panic!("releasing someone else's lease failed: {e}"));
    let mine = lease("token-d", t0 + 50_000);
    store
        .claim_publication(&PublicationClaim {
            key: PublicationKey::new(failing.clone(), channel),
            lease: mine.clone(),
            now: Timestamp::from_millis(t0 + 20),
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("claim after restart failed"));
    store
        .release_publication(&held(&failing, "token-d"))
        .await
        .unwrap_or_else(|e| panic!("release failed: {e}"));
    assert!(
        store
            .claim_publication(&PublicationClaim {
                key: PublicationKey::new(failing.clone(), channel),
                lease: lease("token-e", t0 + 60_000),
                now: Timestamp::from_millis(t0 + 21)
            })
            .await
            .ok()
            .flatten()
            .is_some(),
        "a released lease can be claimed at once"
    );
    let all = store
        .publications_of(&failing)
        .await
        .unwrap_or_else(|e| panic!("listing a job's publications failed: {e}"));
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].channel_id, channel);
    assert!(matches!(
        store
            .claim_publication(&PublicationClaim {
                key: PublicationKey::new(JobId::new(format!("{run}-missing")), channel),
                lease: mine.clone(),
                now: Timestamp::from_millis(t0)
            })
            .await,
        Err(Error::NotFound { .. })
    ));
}
