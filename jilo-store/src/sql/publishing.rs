//! Connected channels and publication records in SQL. Channels are plain columns (the tokens
//! arrive sealed); a publication is a JSON document beside the columns its queries use (state,
//! lease, statistics time), changed read-modify-write in one transaction that locks the row.

use std::sync::Arc;

use super::SqlStore;
use crate::seam::errors::{StoreError, StoreResult};
use crate::seam::{args, Conn, SqlRow};
use async_trait::async_trait;
use jilo_core::{
    ChannelConnection, ChannelStore, Error, HeldPublication, JobId, Publication, PublicationBegun,
    PublicationClaim, PublicationKey, PublicationOutcome, PublicationState, PublicationStore,
    Result, StatsReading, Timestamp, UploadCheckpoint, UserId,
};

fn channel_from_row(r: &SqlRow) -> StoreResult<ChannelConnection> {
    Ok(ChannelConnection {
        user: UserId::new(r.text(0)?),
        channel_id: r.text(1)?,
        channel_name: r.text(2)?,
        access_token: r.text(3)?,
        access_expires_at: Timestamp::from_millis(r.int(4)?),
        refresh_token: r.text(5)?,
        scopes: r.text(6)?.split_whitespace().map(str::to_owned).collect(),
        connected_at: Timestamp::from_millis(r.int(7)?),
        updated_at: Timestamp::from_millis(r.int(8)?),
    })
}

const CHANNEL_COLUMNS: &str = "user_id, channel_id, channel_name, access_token, \
    access_expires_ms, refresh_token, scopes, connected_ms, updated_ms";

#[async_trait]
impl ChannelStore for SqlStore {
    async fn save_channel(&self, channel: &ChannelConnection) -> Result<()> {
        let channel = Arc::new(channel.clone());
        self.write("keeping a channel", move |c| {
            let channel = Arc::clone(&channel);
            Box::pin(async move {
                let scopes = channel.scopes.join(" ");
                c.exec(
                    &format!(
                        "INSERT INTO jilo_channels ({CHANNEL_COLUMNS}) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                         ON CONFLICT (user_id, channel_id) DO UPDATE SET \
                         channel_name = excluded.channel_name, \
                         access_token = excluded.access_token, \
                         access_expires_ms = excluded.access_expires_ms, \
                         refresh_token = excluded.refresh_token, scopes = excluded.scopes, \
                         updated_ms = excluded.updated_ms"
                    ),
                    &args![
                        channel.user.as_str(),
                        channel.channel_id.as_str(),
                        channel.channel_name.as_str(),
                        channel.access_token.as_str(),
                        channel.access_expires_at.as_millis(),
                        channel.refresh_token.as_str(),
                        scopes.as_str(),
                        channel.connected_at.as_millis(),
                        channel.updated_at.as_millis(),
                    ],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn channel(&self, user: &UserId, channel_id: &str) -> Result<Option<ChannelConnection>> {
        let key = Arc::new((user.clone(), channel_id.to_owned()));
        self.read("reading a channel", false, move |c| {
            let key = Arc::clone(&key);
            Box::pin(async move {
                c.fetch_opt(
                    &format!(
                        "SELECT {CHANNEL_COLUMNS} FROM jilo_channels \
                         WHERE user_id = $1 AND channel_id = $2"
                    ),
                    &args![key.0.as_str(), key.1.as_str()],
                )
                .await?
                .as_ref()
                .map(channel_from_row)
                .transpose()
            })
        })
        .await
    }

    async fn channels(&self, user: &UserId) -> Result<Vec<ChannelConnection>> {
        let user = user.clone();
        self.read("listing channels", false, move |c| {
            let user = user.clone();
            Box::pin(async move {
                c.fetch(
                    &format!(
                        "SELECT {CHANNEL_COLUMNS} FROM jilo_channels WHERE user_id = $1 \
                         ORDER BY channel_id"
                    ),
                    &args![user.as_str()],
                )
                .await?
                .iter()
                .map(channel_from_row)
                .collect()
            })
        })
        .await
    }

    async fn remove_channel(&self, user: &UserId, channel_id: &str) -> Result<bool> {
        let key = Arc::new((user.clone(), channel_id.to_owned()));
        self.write("removing a channel", move |c| {
            let key = Arc::clone(&key);
            Box::pin(async move {
                let removed = c
                    .exec(
                        "DELETE FROM jilo_channels WHERE user_id = $1 AND channel_id = $2",
                        &args![key.0.as_str(), key.1.as_str()],
                    )
                    .await?;
                Ok(removed > 0)
            })
        })
        .await
    }
}

fn publication_key(job: &JobId, channel_id: &str) -> String {
    format!("{job}/{channel_id}")
}

fn read_doc(doc: &str) -> StoreResult<Publication> {
    Ok(serde_json::from_str(doc)?)
}

fn docs(rows: &[SqlRow]) -> StoreResult<Vec<Publication>> {
    rows.iter().map(|r| read_doc(&r.text(0)?)).collect()
}

/// The record, its row locked until the transaction ends (where the backend locks rows; an
/// SQLite write transaction already holds the database).
async fn locked_publication(
    c: &mut dyn Conn,
    job: &JobId,
    channel_id: &str,
) -> StoreResult<Option<Publication>> {
    let lock = c.dialect().row_lock;
    let row = c
        .fetch_opt(
            &format!(
                "SELECT doc FROM jilo_publications WHERE job_id = $1 AND channel_id = $2{lock}"
            ),
            &args![job.as_str(), channel_id],
        )
        .await?;
    row.map(|r| read_doc(&r.text(0)?)).transpose()
}

/// The record, locked, or `NotFound`.
async fn existing_publication(
    c: &mut dyn Conn,
    job: &JobId,
    channel_id: &str,
) -> StoreResult<Publication> {
    locked_publication(c, job, channel_id)
        .await?
        .ok_or_else(|| Error::not_found("publication", publication_key(job, channel_id)).into())
}

/// Writes the record back (every column from the document).
async fn write_publication(c: &mut dyn Conn, p: &Publication) -> StoreResult<()> {
    let doc = serde_json::to_string(p)?;
    let lease_token = p.lease.as_ref().map(|l| l.token.as_str());
    let lease_until = p.lease.as_ref().map(|l| l.until.as_millis());
    let stats_ms = p.stats.as_ref().map_or(-1, |(_, at)| at.as_millis());
    c.exec(
        "UPDATE jilo_publications SET user_id = $3, state = $4, lease_token = $5, \
         lease_until_ms = $6, stats_ms = $7, created_ms = $8, updated_ms = $9, doc = $10 \
         WHERE job_id = $1 AND channel_id = $2",
        &args![
            p.job.as_str(),
            p.channel_id.as_str(),
            p.user.as_str(),
            p.state.as_str(),
            lease_token,
            lease_until,
            stats_ms,
            p.created_at.as_millis(),
            p.updated_at.as_millis(),
            doc.as_str(),
        ],
    )
    .await?;
    Ok(())
}

/// A publication's key, owned, for a transaction's body.
type Key = Arc<(JobId, String)>;

fn owned_key(key: &PublicationKey) -> Key {
    Arc::new((key.job.clone(), key.channel_id.clone()))
}

impl SqlStore {
    /// Runs `change` on the record held by `token` and writes it back.
    async fn change_held<T>(
        &self,
        what: &str,
        held: &HeldPublication,
        change: impl Fn(&mut Publication) -> T + Send + Sync + 'static,
    ) -> Result<T>
    where
        T: Send + 'static,
    {
        let (key, token, change) = (owned_key(&held.key), held.token.clone(), Arc::new(change));
        self.write(what, move |c| {
            let (key, token, change) = (Arc::clone(&key), token.clone(), Arc::clone(&change));
            Box::pin(async move {
                let (job, channel_id) = &*key;
                let mut record = existing_publication(c, job, channel_id).await?;
                if !record.held_by(&token) {
                    return Err(StoreError::Rule(Error::lost_race(format!(
                        "the upload lease of {} is held by another process or has ended",
                        publication_key(job, channel_id)
                    ))));
                }
                let out = change(&mut record);
                write_publication(c, &record).await?;
                Ok(out)
            })
        })
        .await
    }

    async fn publications_where(
        &self,
        what: &str,
        filter: &'static str,
        at: Timestamp,
        limit: u32,
    ) -> Result<Vec<Publication>> {
        self.read(what, false, move |c| {
            Box::pin(async move {
                docs(
                    &c.fetch(
                        &format!("SELECT doc FROM jilo_publications WHERE {filter} LIMIT $2"),
                        &args![at.as_millis(), i64::from(limit)],
                    )
                    .await?,
                )
            })
        })
        .await
    }
}

#[async_trait]
impl PublicationStore for SqlStore {
    async fn begin_publication(&self, publication: &Publication) -> Result<PublicationBegun> {
        let publication = Arc::new(publication.clone());
        self.write("beginning a publication", move |c| {
            let publication = Arc::clone(&publication);
            Box::pin(async move {
                // Insert first: two first publishes of one job meet on the key, not on a lock
                // of a row that is not there yet.
                let doc = serde_json::to_string(&*publication)?;
                let inserted = c
                    .exec(
                        "INSERT INTO jilo_publications (job_id, channel_id, user_id, state, \
                         lease_token, lease_until_ms, stats_ms, created_ms, updated_ms, doc) \
                         VALUES ($1, $2, $3, $4, NULL, NULL, -1, $5, $6, $7) \
                         ON CONFLICT (job_id, channel_id) DO NOTHING",
                        &args![
                            publication.job.as_str(),
                            publication.channel_id.as_str(),
                            publication.user.as_str(),
                            publication.state.as_str(),
                            publication.created_at.as_millis(),
                            publication.updated_at.as_millis(),
                            doc.as_str(),
                        ],
                    )
                    .await?
                    > 0;
                if inserted {
                    return Ok(PublicationBegun {
                        publication: (*publication).clone(),
                        written: true,
                    });
                }
                let earlier = locked_publication(c, &publication.job, &publication.channel_id)
                    .await?
                    .ok_or_else(|| {
                        Error::lost_race("a publication vanished while it was being begun")
                    })?;
                if earlier.state == PublicationState::Failed {
                    let restarted = earlier.restarted_with(&publication);
                    write_publication(c, &restarted).await?;
                    Ok(PublicationBegun {
                        publication: restarted,
                        written: true,
                    })
                } else {
                    Ok(PublicationBegun {
                        publication: earlier,
                        written: false,
                    })
                }
            })
        })
        .await
    }

    async fn claim_publication(&self, claim: &PublicationClaim) -> Result<Option<Publication>> {
        let claim = Arc::new(claim.clone());
        self.write("claiming a publication", move |c| {
            let claim = Arc::clone(&claim);
            Box::pin(async move {
                let mut record =
                    existing_publication(c, &claim.key.job, &claim.key.channel_id).await?;
                if !record.claimable_at(claim.now) {
                    return Ok(None);
                }
                record.lease = Some(claim.lease.clone());
                record.attempts += 1;
                record.updated_at = claim.now;
                write_publication(c, &record).await?;
                Ok(Some(record))
            })
        })
        .await
    }

    async fn save_upload(&self, checkpoint: &UploadCheckpoint) -> Result<()> {
        let (session, until) = (checkpoint.session.clone(), checkpoint.until);
        self.change_held("keeping upload progress", &checkpoint.held, move |record| {
            record.keep_session(&session);
            if let Some(lease) = record.lease.as_mut() {
                lease.until = until;
            }
        })
        .await
    }

    async fn renew_publication(&self, held: &HeldPublication, until: Timestamp) -> Result<()> {
        self.change_held("renewing an upload's lease", held, move |record| {
            if let Some(lease) = record.lease.as_mut() {
                lease.until = until;
            }
        })
        .await
    }

    async fn finish_publication(
        &self,
        held: &HeldPublication,
        outcome: &PublicationOutcome,
    ) -> Result<Publication> {
        let outcome = outcome.clone();
        self.change_held("ending a publication", held, move |record| {
            record.end(&outcome);
            record.clone()
        })
        .await
    }

    async fn note_publication(&self, key: &PublicationKey, notes: &[String]) -> Result<()> {
        let (key, notes) = (owned_key(key), Arc::new(notes.to_vec()));
        self.write("noting a publication", move |c| {
            let (key, notes) = (Arc::clone(&key), Arc::clone(&notes));
            Box::pin(async move {
                let mut record = existing_publication(c, &key.0, &key.1).await?;
                record.add_notes(&notes);
                write_publication(c, &record).await
            })
        })
        .await
    }

    async fn release_publication(&self, held: &HeldPublication) -> Result<()> {
        match self
            .change_held("releasing a publication", held, |record| {
                record.lease = None;
            })
            .await
        {
            Err(Error::LostRace { .. }) | Err(Error::NotFound { .. }) | Ok(()) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn publication(&self, key: &PublicationKey) -> Result<Option<Publication>> {
        let key = owned_key(key);
        self.read("reading a publication", false, move |c| {
            let key = Arc::clone(&key);
            Box::pin(async move {
                let row = c
                    .fetch_opt(
                        "SELECT doc FROM jilo_publications WHERE job_id = $1 AND channel_id = $2",
                        &args![key.0.as_str(), key.1.as_str()],
                    )
                    .await?;
                row.map(|r| read_doc(&r.text(0)?)).transpose()
            })
        })
        .await
    }

    async fn publications_of(&self, job: &JobId) -> Result<Vec<Publication>> {
        let job = job.clone();
        self.read("listing a job's publications", false, move |c| {
            let job = job.clone();
            Box::pin(async move {
                docs(
                    &c.fetch(
                        "SELECT doc FROM jilo_publications WHERE job_id = $1 ORDER BY channel_id",
                        &args![job.as_str()],
                    )
                    .await?,
                )
            })
        })
        .await
    }

    async fn stalled_publications(&self, now: Timestamp, limit: u32) -> Result<Vec<Publication>> {
        self.publications_where(
            "listing stalled uploads",
            "state = 'uploading' AND (lease_until_ms IS NULL OR lease_until_ms <= $1) \
             ORDER BY created_ms",
            now,
            limit,
        )
        .await
    }

    async fn publications_due_for_stats(
        &self,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<Publication>> {
        self.publications_where(
            "listing videos due for statistics",
            "state = 'published' AND stats_ms < $1 ORDER BY stats_ms",
            before,
            limit,
        )
        .await
    }

    async fn record_stats(&self, reading: &StatsReading) -> Result<()> {
        let (key, stats, at) = (owned_key(&reading.key), reading.stats, reading.at);
        self.write("keeping statistics", move |c| {
            let key = Arc::clone(&key);
            Box::pin(async move {
                let mut record = existing_publication(c, &key.0, &key.1).await?;
                if record.state != PublicationState::Published {
                    return Err(StoreError::Rule(Error::not_allowed(
                        "only a published video has statistics",
                    )));
                }
                record.stats = Some((stats, at));
                write_publication(c, &record).await
            })
        })
        .await
    }
}
