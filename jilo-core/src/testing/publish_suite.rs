//! The conformance suites every [`ChannelStore`] and [`PublicationStore`] runs against itself.

use crate::error::Error;
use crate::ids::{JobId, Timestamp, UserId};
use crate::publish::{
    ChannelConnection, HeldPublication, Privacy, Publication, PublicationBegun, PublicationClaim,
    PublicationKey, PublicationLease, PublicationOutcome, PublicationState, PublishMetadata,
    PublishRequest, PublishedVideo, StatsReading, UploadCheckpoint, UploadSession, VideoStats,
};
use crate::traits::{ChannelStore, PublicationStore};

fn run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn connection(user: &UserId, channel: &str, token: &str, at: i64) -> ChannelConnection {
    ChannelConnection {
        user: user.clone(),
        channel_id: channel.to_owned(),
        channel_name: "频道 'one'".to_owned(),
        access_token: format!("v1:k1:nonce:{token}"),
        access_expires_at: Timestamp::from_millis(at + 3_599_000),
        refresh_token: format!("v1:k1:nonce:r-{token}"),
        scopes: vec![
            "https://www.googleapis.com/auth/youtube".to_owned(),
            "https://www.googleapis.com/auth/youtube.upload".to_owned(),
        ],
        connected_at: Timestamp::from_millis(at),
        updated_at: Timestamp::from_millis(at),
    }
}

/// Checks the [`ChannelStore`] contract: a connection reads back as saved; saving the same
/// user and channel again replaces tokens, name and scopes but keeps the first connection
/// time; another user's connection to the same channel is separate; removing says whether
/// there was one. Uses random ids. Panics naming the broken rule.
pub async fn channel_store_suite<S: ChannelStore + ?Sized>(store: &S) {
    let run = run_id();
    let user = UserId::new(format!("{run}-u1"));
    let other = UserId::new(format!("{run}-u2"));
    let channel = format!("UC{run}");
    let ok = |what: &str, r: crate::Result<()>| {
        if let Err(e) = r {
            panic!("{what} failed: {e}");
        }
    };
    assert!(
        store
            .channel(&user, &channel)
            .await
            .ok()
            .flatten()
            .is_none(),
        "a channel never connected is None"
    );
    let first = connection(&user, &channel, "a", 1_000);
    ok("saving a channel", store.save_channel(&first).await);
    assert_eq!(
        store.channel(&user, &channel).await.ok().flatten(),
        Some(first.clone()),
        "a connection reads back as saved"
    );
    let mut again = connection(&user, &channel, "b", 9_000);
    again.channel_name = "renamed".to_owned();
    again.scopes = vec!["https://www.googleapis.com/auth/youtube.upload".to_owned()];
    ok("saving a channel again", store.save_channel(&again).await);
    let read = store
        .channel(&user, &channel)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the channel is gone after a second save"));
    assert_eq!(read.access_token, again.access_token, "tokens are replaced");
    assert_eq!(read.refresh_token, again.refresh_token);
    assert_eq!(read.channel_name, "renamed");
    assert_eq!(read.scopes, again.scopes);
    assert_eq!(read.access_expires_at, again.access_expires_at);
    assert_eq!(
        read.connected_at, first.connected_at,
        "the first connection time is kept"
    );
    assert_eq!(read.updated_at, again.updated_at);

    let theirs = connection(&other, &channel, "c", 2_000);
    ok(
        "saving another user's channel",
        store.save_channel(&theirs).await,
    );
    let second = connection(&user, &format!("UC{run}-2"), "d", 3_000);
    ok("saving a second channel", store.save_channel(&second).await);
    let mine = store
        .channels(&user)
        .await
        .unwrap_or_else(|e| panic!("listing channels failed: {e}"));
    assert_eq!(
        mine.iter()
            .map(|c| c.channel_id.as_str())
            .collect::<Vec<_>>(),
        vec![channel.as_str(), second.channel_id.as_str()],
        "a user's channels, by id, without other users'"
    );
    assert_eq!(
        store.channel(&other, &channel).await.ok().flatten(),
        Some(theirs),
        "users' connections are separate"
    );
    assert_eq!(store.remove_channel(&user, &channel).await.ok(), Some(true));
    assert_eq!(
        store.remove_channel(&user, &channel).await.ok(),
        Some(false),
        "removing twice finds nothing"
    );
    assert!(store
        .channel(&user, &channel)
        .await
        .ok()
        .flatten()
        .is_none());
    assert!(
        store
            .channel(&other, &channel)
            .await
            .ok()
            .flatten()
            .is_some(),
        "removing one user's connection keeps another's"
    );
}

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
    let run = run_id();
    let job = JobId::new(format!("{run}-job"));
    let channel = "UCsuite";
    let t0 = 1_800_000_000_000_i64;
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

    // One holder at a time.
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
    store
        .save_upload(&UploadCheckpoint {
            held: HeldPublication {
                key: PublicationKey::new(job.clone(), channel),
                token: "token-a".to_string(),
            },
            session: session(&uri, 0),
            until: Timestamp::from_millis(t0 + 90_000),
        })
        .await
        .unwrap_or_else(|e| panic!("keeping the session failed: {e}"));
    store
        .save_upload(&UploadCheckpoint {
            held: HeldPublication {
                key: PublicationKey::new(job.clone(), channel),
                token: "token-a".to_string(),
            },
            session: session(&uri, 524_288),
            until: Timestamp::from_millis(t0 + 90_000),
        })
        .await
        .unwrap_or_else(|e| panic!("keeping progress failed: {e}"));
    store
        .save_upload(&UploadCheckpoint {
            held: HeldPublication {
                key: PublicationKey::new(job.clone(), channel),
                token: "token-a".to_string(),
            },
            session: session(&uri, 262_144),
            until: Timestamp::from_millis(t0 + 90_000),
        })
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
        .renew_publication(
            &HeldPublication {
                key: PublicationKey::new(job.clone(), channel),
                token: "token-a".to_string(),
            },
            Timestamp::from_millis(t0 + 95_000),
        )
        .await
        .unwrap_or_else(|e| panic!("renewing failed: {e}"));
    assert!(
        matches!(
            store
                .renew_publication(
                    &HeldPublication {
                        key: PublicationKey::new(job.clone(), channel),
                        token: "token-x".to_string()
                    },
                    Timestamp::from_millis(t0 + 1)
                )
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
    store
        .renew_publication(
            &HeldPublication {
                key: PublicationKey::new(job.clone(), channel),
                token: "token-a".to_string(),
            },
            Timestamp::from_millis(t0 + 90_000),
        )
        .await
        .unwrap_or_else(|e| panic!("renewing failed: {e}"));

    // The lease lapses; another process takes over; the first is locked out.
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
    let late = store
        .save_upload(&UploadCheckpoint {
            held: HeldPublication {
                key: PublicationKey::new(job.clone(), channel),
                token: "token-a".to_string(),
            },
            session: session(&uri, 786_432),
            until: Timestamp::from_millis(t0 + 200_000),
        })
        .await;
    assert!(
        matches!(late, Err(Error::LostRace { .. })),
        "the old holder's progress is refused: {late:?}"
    );
    let new_uri = format!("{uri}-restarted");
    store
        .save_upload(&UploadCheckpoint {
            held: HeldPublication {
                key: PublicationKey::new(job.clone(), channel),
                token: "token-b".to_string(),
            },
            session: session(&new_uri, 0),
            until: Timestamp::from_millis(t0 + 200_000),
        })
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
        .finish_publication(
            &HeldPublication {
                key: PublicationKey::new(job.clone(), channel),
                token: "token-a".to_string(),
            },
            &outcome,
        )
        .await;
    assert!(
        matches!(stale_end, Err(Error::LostRace { .. })),
        "only the holder ends the record: {stale_end:?}"
    );
    let done = store
        .finish_publication(
            &HeldPublication {
                key: PublicationKey::new(job.clone(), channel),
                token: "token-b".to_string(),
            },
            &outcome,
        )
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

    // Statistics.
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

    // A failure restarts on the next begin.
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
            &HeldPublication {
                key: PublicationKey::new(failing.clone(), channel),
                token: "token-a".to_string(),
            },
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
        .release_publication(&HeldPublication {
            key: PublicationKey::new(failing.clone(), channel),
            token: "nobody".to_string(),
        })
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
        .release_publication(&HeldPublication {
            key: PublicationKey::new(failing.clone(), channel),
            token: "token-d".to_string(),
        })
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
