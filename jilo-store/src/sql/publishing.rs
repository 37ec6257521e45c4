//! Connected channels and publication records in SQL. Channels are plain columns (the tokens
//! arrive sealed); a publication is a JSON document beside the columns its queries use (state,
//! lease, statistics time), changed read-modify-write in one transaction that locks the row.

use async_trait::async_trait;
use jilo_core::{
    ChannelConnection, ChannelStore, Error, JobId, Publication, PublicationLease,
    PublicationOutcome, PublicationState, PublicationStore, Result, Timestamp, UploadSession,
    UserId, VideoStats,
};
use sqlx::{Any, Transaction};

use super::errors::{StoreError, StoreResult};
use super::{Backend, SqlStore};

type ChannelRow = (
    String,
    String,
    String,
    String,
    i64,
    String,
    String,
    i64,
    i64,
);

fn channel_from_row(row: ChannelRow) -> ChannelConnection {
    let (user, channel_id, name, access, expires, refresh, scopes, connected, updated) = row;
    ChannelConnection {
        user: UserId::new(user),
        channel_id,
        channel_name: name,
        access_token: access,
        access_expires_at: Timestamp::from_millis(expires),
        refresh_token: refresh,
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        connected_at: Timestamp::from_millis(connected),
        updated_at: Timestamp::from_millis(updated),
    }
}

const CHANNEL_COLUMNS: &str = "user_id, channel_id, channel_name, access_token, \
    access_expires_ms, refresh_token, scopes, connected_ms, updated_ms";

#[async_trait]
impl ChannelStore for SqlStore {
    async fn save_channel(&self, channel: &ChannelConnection) -> Result<()> {
        let scopes = channel.scopes.join(" ");
        self.retry("keeping a channel", || async {
            let mut tx = self.begin_write().await?;
            sqlx::query(&format!(
                "INSERT INTO jilo_channels ({CHANNEL_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (user_id, channel_id) DO UPDATE SET \
                 channel_name = excluded.channel_name, access_token = excluded.access_token, \
                 access_expires_ms = excluded.access_expires_ms, \
                 refresh_token = excluded.refresh_token, scopes = excluded.scopes, \
                 updated_ms = excluded.updated_ms"
            ))
            .bind(channel.user.as_str())
            .bind(channel.channel_id.as_str())
            .bind(channel.channel_name.as_str())
            .bind(channel.access_token.as_str())
            .bind(channel.access_expires_at.as_millis())
            .bind(channel.refresh_token.as_str())
            .bind(scopes.as_str())
            .bind(channel.connected_at.as_millis())
            .bind(channel.updated_at.as_millis())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn channel(&self, user: &UserId, channel_id: &str) -> Result<Option<ChannelConnection>> {
        self.retry("reading a channel", || async {
            let row: Option<ChannelRow> = sqlx::query_as(&format!(
                "SELECT {CHANNEL_COLUMNS} FROM jilo_channels \
                 WHERE user_id = $1 AND channel_id = $2"
            ))
            .bind(user.as_str())
            .bind(channel_id)
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.map(channel_from_row))
        })
        .await
    }

    async fn channels(&self, user: &UserId) -> Result<Vec<ChannelConnection>> {
        self.retry("listing channels", || async {
            let rows: Vec<ChannelRow> = sqlx::query_as(&format!(
                "SELECT {CHANNEL_COLUMNS} FROM jilo_channels WHERE user_id = $1 \
                 ORDER BY channel_id"
            ))
            .bind(user.as_str())
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.into_iter().map(channel_from_row).collect())
        })
        .await
    }

    async fn remove_channel(&self, user: &UserId, channel_id: &str) -> Result<bool> {
        self.retry("removing a channel", || async {
            let mut tx = self.begin_write().await?;
            let done =
                sqlx::query("DELETE FROM jilo_channels WHERE user_id = $1 AND channel_id = $2")
                    .bind(user.as_str())
                    .bind(channel_id)
                    .execute(&mut *tx)
                    .await?;
            tx.commit().await?;
            Ok(done.rows_affected() > 0)
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

impl SqlStore {
    /// The record, its row locked until the transaction ends (SQLite: the write transaction
    /// already holds the database).
    async fn locked_publication(
        &self,
        tx: &mut Transaction<'static, Any>,
        job: &JobId,
        channel_id: &str,
    ) -> StoreResult<Option<Publication>> {
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let doc: Option<String> = sqlx::query_scalar(&format!(
            "SELECT doc FROM jilo_publications WHERE job_id = $1 AND channel_id = $2{lock}"
        ))
        .bind(job.as_str())
        .bind(channel_id)
        .fetch_optional(&mut **tx)
        .await?;
        doc.as_deref().map(read_doc).transpose()
    }

    /// Writes the record back (every column from the document).
    async fn write_publication(
        tx: &mut Transaction<'static, Any>,
        p: &Publication,
        insert: bool,
    ) -> StoreResult<()> {
        let doc = serde_json::to_string(p)?;
        let lease_token = p.lease.as_ref().map(|l| l.token.clone());
        let lease_until = p.lease.as_ref().map(|l| l.until.as_millis());
        let stats_ms = p.stats.as_ref().map_or(-1, |(_, at)| at.as_millis());
        let sql = if insert {
            "INSERT INTO jilo_publications (job_id, channel_id, user_id, state, lease_token, \
             lease_until_ms, stats_ms, created_ms, updated_ms, doc) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        } else {
            "UPDATE jilo_publications SET user_id = $3, state = $4, lease_token = $5, \
             lease_until_ms = $6, stats_ms = $7, created_ms = $8, updated_ms = $9, doc = $10 \
             WHERE job_id = $1 AND channel_id = $2"
        };
        sqlx::query(sql)
            .bind(p.job.as_str())
            .bind(p.channel_id.as_str())
            .bind(p.user.as_str())
            .bind(p.state.as_str())
            .bind(lease_token)
            .bind(lease_until)
            .bind(stats_ms)
            .bind(p.created_at.as_millis())
            .bind(p.updated_at.as_millis())
            .bind(doc)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Runs `change` on the record held by `token` and writes it back.
    async fn change_held<T>(
        &self,
        what: &str,
        job: &JobId,
        channel_id: &str,
        token: &str,
        change: impl Fn(&mut Publication) -> T + Send + Sync,
    ) -> Result<T>
    where
        T: Send,
    {
        self.retry(what, || async {
            let mut tx = self.begin_write().await?;
            let mut record = self
                .locked_publication(&mut tx, job, channel_id)
                .await?
                .ok_or_else(|| Error::not_found("publication", publication_key(job, channel_id)))?;
            if !record.held_by(token) {
                return Err(StoreError::Rule(Error::lost_race(format!(
                    "the upload lease of {} is held by another process or has ended",
                    publication_key(job, channel_id)
                ))));
            }
            let out = change(&mut record);
            Self::write_publication(&mut tx, &record, false).await?;
            tx.commit().await?;
            Ok(out)
        })
        .await
    }

    async fn publications_where(
        &self,
        what: &str,
        filter: &str,
        at: Timestamp,
        limit: u32,
    ) -> Result<Vec<Publication>> {
        self.retry(what, || async {
            let docs: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT doc FROM jilo_publications WHERE {filter} LIMIT $2"
            ))
            .bind(at.as_millis())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            docs.iter().map(|d| read_doc(d)).collect()
        })
        .await
    }
}

#[async_trait]
impl PublicationStore for SqlStore {
    async fn begin_publication(&self, publication: &Publication) -> Result<(Publication, bool)> {
        self.retry("beginning a publication", || async {
            let mut tx = self.begin_write().await?;
            // Insert first: two first publishes of one job meet on the key, not on a lock of
            // a row that is not there yet.
            let doc = serde_json::to_string(publication)?;
            let inserted = sqlx::query(
                "INSERT INTO jilo_publications (job_id, channel_id, user_id, state, lease_token, \
                 lease_until_ms, stats_ms, created_ms, updated_ms, doc) \
                 VALUES ($1, $2, $3, $4, NULL, NULL, -1, $5, $6, $7) \
                 ON CONFLICT (job_id, channel_id) DO NOTHING",
            )
            .bind(publication.job.as_str())
            .bind(publication.channel_id.as_str())
            .bind(publication.user.as_str())
            .bind(publication.state.as_str())
            .bind(publication.created_at.as_millis())
            .bind(publication.updated_at.as_millis())
            .bind(doc)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0;
            if inserted {
                tx.commit().await?;
                return Ok((publication.clone(), true));
            }
            let earlier = self
                .locked_publication(&mut tx, &publication.job, &publication.channel_id)
                .await?
                .ok_or_else(|| {
                    Error::lost_race("a publication vanished while it was being begun")
                })?;
            let out = if earlier.state == PublicationState::Failed {
                let restarted = earlier.restarted_with(publication);
                Self::write_publication(&mut tx, &restarted, false).await?;
                (restarted, true)
            } else {
                (earlier, false)
            };
            tx.commit().await?;
            Ok(out)
        })
        .await
    }

    async fn claim_publication(
        &self,
        job: &JobId,
        channel_id: &str,
        lease: &PublicationLease,
        now: Timestamp,
    ) -> Result<Option<Publication>> {
        self.retry("claiming a publication", || async {
            let mut tx = self.begin_write().await?;
            let mut record = self
                .locked_publication(&mut tx, job, channel_id)
                .await?
                .ok_or_else(|| Error::not_found("publication", publication_key(job, channel_id)))?;
            if !record.claimable_at(now) {
                return Ok(None);
            }
            record.lease = Some(lease.clone());
            record.attempts += 1;
            record.updated_at = now;
            Self::write_publication(&mut tx, &record, false).await?;
            tx.commit().await?;
            Ok(Some(record))
        })
        .await
    }

    async fn save_upload(
        &self,
        job: &JobId,
        channel_id: &str,
        token: &str,
        session: &UploadSession,
        until: Timestamp,
    ) -> Result<()> {
        self.change_held(
            "keeping upload progress",
            job,
            channel_id,
            token,
            |record| {
                record.keep_session(session);
                if let Some(lease) = record.lease.as_mut() {
                    lease.until = until;
                }
            },
        )
        .await
    }

    async fn renew_publication(
        &self,
        job: &JobId,
        channel_id: &str,
        token: &str,
        until: Timestamp,
    ) -> Result<()> {
        self.change_held(
            "renewing an upload's lease",
            job,
            channel_id,
            token,
            |record| {
                if let Some(lease) = record.lease.as_mut() {
                    lease.until = until;
                }
            },
        )
        .await
    }

    async fn finish_publication(
        &self,
        job: &JobId,
        channel_id: &str,
        token: &str,
        outcome: &PublicationOutcome,
    ) -> Result<Publication> {
        self.change_held("ending a publication", job, channel_id, token, |record| {
            record.end(outcome);
            record.clone()
        })
        .await
    }

    async fn note_publication(
        &self,
        job: &JobId,
        channel_id: &str,
        notes: &[String],
    ) -> Result<()> {
        self.retry("noting a publication", || async {
            let mut tx = self.begin_write().await?;
            let mut record = self
                .locked_publication(&mut tx, job, channel_id)
                .await?
                .ok_or_else(|| Error::not_found("publication", publication_key(job, channel_id)))?;
            record.add_notes(notes);
            Self::write_publication(&mut tx, &record, false).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn release_publication(&self, job: &JobId, channel_id: &str, token: &str) -> Result<()> {
        match self
            .change_held(
                "releasing a publication",
                job,
                channel_id,
                token,
                |record| {
                    record.lease = None;
                },
            )
            .await
        {
            Err(Error::LostRace { .. }) | Err(Error::NotFound { .. }) | Ok(()) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn publication(&self, job: &JobId, channel_id: &str) -> Result<Option<Publication>> {
        self.retry("reading a publication", || async {
            let doc: Option<String> = sqlx::query_scalar(
                "SELECT doc FROM jilo_publications WHERE job_id = $1 AND channel_id = $2",
            )
            .bind(job.as_str())
            .bind(channel_id)
            .fetch_optional(&self.pool)
            .await?;
            doc.as_deref().map(read_doc).transpose()
        })
        .await
    }

    async fn publications_of(&self, job: &JobId) -> Result<Vec<Publication>> {
        self.retry("listing a job's publications", || async {
            let docs: Vec<String> = sqlx::query_scalar(
                "SELECT doc FROM jilo_publications WHERE job_id = $1 ORDER BY channel_id",
            )
            .bind(job.as_str())
            .fetch_all(&self.pool)
            .await?;
            docs.iter().map(|d| read_doc(d)).collect()
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

    async fn record_stats(
        &self,
        job: &JobId,
        channel_id: &str,
        stats: &VideoStats,
        at: Timestamp,
    ) -> Result<()> {
        self.retry("keeping statistics", || async {
            let mut tx = self.begin_write().await?;
            let mut record = self
                .locked_publication(&mut tx, job, channel_id)
                .await?
                .ok_or_else(|| Error::not_found("publication", publication_key(job, channel_id)))?;
            if record.state != PublicationState::Published {
                return Err(StoreError::Rule(Error::not_allowed(
                    "only a published video has statistics",
                )));
            }
            record.stats = Some((*stats, at));
            Self::write_publication(&mut tx, &record, false).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }
}
