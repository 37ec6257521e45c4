//! The job store in SQL: compare-and-set transitions carrying their credit changes, claims
//! with leases, webhook deduplication.

use async_trait::async_trait;
use futures::stream::BoxStream;
use jilo_core::{
    AlertClaim, ClaimRequest, CreditHold, DeliveryOutcome, DeliveryRecord, Error, HoldState, Job,
    JobEvent, JobId, JobStore, JobUpdate, LeaseRenewal, ProviderCooling, ProviderId, Reservation,
    Result, Timestamp, UserId,
};
use sqlx::{Any, Transaction};

use super::errors::StoreResult;
use super::ledger::{check_grant, end_hold_in, grant_in, reserve_in};
use super::{Backend, SqlStore};

type JobRow = (String, i64, Option<String>, Option<i64>);

const JOB_COLUMNS: &str = "doc, version, lease_owner, lease_until_ms";

/// The job as stored: the document, with the columns claims write over it.
fn job_from_row((doc, version, lease_owner, lease_until): JobRow) -> StoreResult<Job> {
    let mut job: Job = serde_json::from_str(&doc)?;
    job.version = u64::try_from(version).unwrap_or(0);
    job.lease_owner = lease_owner;
    job.lease_until = lease_until.map(Timestamp::from_millis);
    Ok(job)
}

fn version_i64(v: u64) -> StoreResult<i64> {
    Ok(i64::try_from(v).map_err(|_| Error::invalid("version", "out of range"))?)
}

async fn insert_job(tx: &mut Transaction<'static, Any>, job: &Job) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO jilo_jobs (id, user_id, state, version, provider, provider_request_id, \
         created_ms, deadline_ms, next_check_ms, lease_owner, lease_until_ms, doc) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(job.id.as_str())
    .bind(job.user.as_str())
    .bind(job.state.as_str())
    .bind(version_i64(job.version)?)
    .bind(job.provider().map(|p| p.as_str().to_owned()))
    .bind(job.provider_request_id.clone())
    .bind(job.created_at.as_millis())
    .bind(job.deadline_at.as_millis())
    .bind(job.next_check_at.map(Timestamp::as_millis))
    .bind(job.lease_owner.clone())
    .bind(job.lease_until.map(Timestamp::as_millis))
    .bind(serde_json::to_string(job)?)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Remembers the job's current provider request, if it has one.
async fn remember_request(tx: &mut Transaction<'static, Any>, job: &Job) -> StoreResult<()> {
    if let (Some(provider), Some(request_id)) = (job.provider(), &job.provider_request_id) {
        sqlx::query(
            "INSERT INTO jilo_job_requests (provider, request_id, job_id) VALUES ($1, $2, $3) \
             ON CONFLICT (provider, request_id) DO NOTHING",
        )
        .bind(provider.as_str())
        .bind(request_id.as_str())
        .bind(job.id.as_str())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Remembers a webhook delivery inside a transaction; `Duplicate` when it was seen.
async fn insert_delivery(
    tx: &mut Transaction<'static, Any>,
    delivery: &DeliveryRecord,
) -> StoreResult<DeliveryOutcome> {
    let inserted = sqlx::query(
        "INSERT INTO jilo_deliveries (provider, delivery_id, job_id, at_ms) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (provider, delivery_id) DO NOTHING",
    )
    .bind(delivery.provider.as_str())
    .bind(delivery.delivery_id.as_str())
    .bind(delivery.job.as_str())
    .bind(delivery.at.as_millis())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(if inserted == 1 {
        DeliveryOutcome::New
    } else {
        DeliveryOutcome::Duplicate
    })
}

impl SqlStore {
    /// One try of a compare-and-set update, on the SQLite writer when the store has one.
    async fn update_once(&self, update: &JobUpdate, next: &Job) -> StoreResult<Job> {
        #[cfg(feature = "sqlite")]
        if let Some(writer) = &self.writer {
            let doc = serde_json::to_string(next)?;
            let (owned, written) = (update.clone(), next.clone());
            writer
                .run(move |conn| super::sqlite_writer::update(conn, &owned, &written, &doc))
                .await?;
            return Ok(next.clone());
        }
        self.try_update(update, next).await
    }

    /// One try of a compare-and-set update with its credit changes.
    async fn try_update(&self, update: &JobUpdate, next: &Job) -> StoreResult<Job> {
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE jilo_jobs SET state = $1, version = $2, provider = $3, \
                     provider_request_id = $4, next_check_ms = $5, lease_owner = $6, \
                     lease_until_ms = $7, deadline_ms = $8, doc = $9 \
                     WHERE id = $10 AND version = $11 AND state = $12",
        )
        .bind(next.state.as_str())
        .bind(version_i64(next.version)?)
        .bind(next.provider().map(|p| p.as_str().to_owned()))
        .bind(next.provider_request_id.clone())
        .bind(next.next_check_at.map(Timestamp::as_millis))
        .bind(next.lease_owner.clone())
        .bind(next.lease_until.map(Timestamp::as_millis))
        .bind(next.deadline_at.as_millis())
        .bind(serde_json::to_string(next)?)
        .bind(next.id.as_str())
        .bind(version_i64(update.expected_version)?)
        .bind(update.expected_state.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            let current: Option<(i64, String)> =
                sqlx::query_as("SELECT version, state FROM jilo_jobs WHERE id = $1")
                    .bind(next.id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            return Err(match current {
                None => Error::not_found("job", &next.id),
                Some((version, state)) => Error::lost_race(format!(
                    "job {} is at version {version} ({state}), not {} ({})",
                    next.id, update.expected_version, update.expected_state
                )),
            }
            .into());
        }
        remember_request(&mut tx, next).await?;
        if let Some(d) = &update.delivery {
            if insert_delivery(&mut tx, d).await? == DeliveryOutcome::Duplicate {
                return Err(Error::already_exists("delivery", &d.delivery_id).into());
            }
        }
        if let Some(to) = update.end_hold {
            end_hold_in(&mut tx, self.backend, &next.id, to, next.updated_at).await?;
        }
        if let Some(g) = &update.grant {
            let known: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM jilo_accounts WHERE user_id = $1")
                    .bind(g.user.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            if known.is_none() {
                return Err(Error::not_found("user", &g.user).into());
            }
            grant_in(&mut tx, g).await?;
        }
        self.notify_in(&mut tx, next).await?;
        tx.commit().await?;
        Ok(next.clone())
    }

    async fn read_job(&self, id: &JobId) -> StoreResult<Option<Job>> {
        let row: Option<JobRow> = sqlx::query_as(&format!(
            "SELECT {JOB_COLUMNS} FROM jilo_jobs WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(job_from_row).transpose()
    }
}

#[async_trait]
impl JobStore for SqlStore {
    async fn create(&self, job: &Job, hold: &Reservation) -> Result<CreditHold> {
        job.check_hold(hold)?;
        let mut stored = job.clone();
        stored.version = 1;
        #[cfg(feature = "sqlite")]
        if let Some(writer) = &self.writer {
            let doc = serde_json::to_string(&stored)
                .map_err(|e| super::errors::StoreError::from(e).into_error("writing a job"))?;
            let taken = self
                .retry("creating a job", || {
                    let (stored, doc, hold) = (stored.clone(), doc.clone(), hold.clone());
                    writer.run(move |conn| super::sqlite_writer::create(conn, &stored, &doc, &hold))
                })
                .await?;
            self.publish_local(&stored);
            return Ok(taken);
        }
        let taken = self
            .retry("creating a job", || async {
                let mut tx = self.begin_write().await?;
                let exists: Option<i64> =
                    sqlx::query_scalar("SELECT 1 FROM jilo_jobs WHERE id = $1")
                        .bind(job.id.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                if exists.is_some() {
                    return Err(Error::already_exists("job", &job.id).into());
                }
                insert_job(&mut tx, &stored).await?;
                remember_request(&mut tx, &stored).await?;
                let taken = reserve_in(&mut tx, self.backend, hold).await?;
                self.notify_in(&mut tx, &stored).await?;
                tx.commit().await?;
                Ok(taken)
            })
            .await?;
        self.publish_local(&stored);
        Ok(taken)
    }

    async fn job(&self, id: &JobId) -> Result<Job> {
        self.retry("reading a job", || async {
            self.read_job(id)
                .await?
                .ok_or_else(|| Error::not_found("job", id).into())
        })
        .await
    }

    async fn update(&self, update: &JobUpdate) -> Result<Job> {
        if update.end_hold == Some(HoldState::Held) {
            return Err(Error::invalid(
                "end_hold",
                "a hold ends as settled or refunded",
            ));
        }
        if let Some(g) = &update.grant {
            check_grant(g)?;
        }
        let mut next = update.job.clone();
        next.version = update.expected_version + 1;
        let written = self
            .retry("updating a job", || async {
                self.update_once(update, &next).await.map_err(|e| {
                    if e.is_unique_violation() {
                        // The only unique key an update can break: the provider request id.
                        Error::invalid(
                            "provider_request_id",
                            format!(
                                "another job already has request {} at provider {}",
                                next.provider_request_id.as_deref().unwrap_or_default(),
                                next.provider().map(|p| p.as_str()).unwrap_or_default()
                            ),
                        )
                        .into()
                    } else {
                        e
                    }
                })
            })
            .await?;
        self.publish_local(&written);
        Ok(written)
    }

    async fn job_by_provider_request(
        &self,
        provider: &ProviderId,
        request_id: &str,
    ) -> Result<Option<Job>> {
        self.retry("finding a job by provider request", || async {
            let row: Option<JobRow> = sqlx::query_as(&format!(
                "SELECT {JOB_COLUMNS} FROM jilo_job_requests r JOIN jilo_jobs j ON j.id = r.job_id \
                 WHERE r.provider = $1 AND r.request_id = $2"
            ))
            .bind(provider.as_str())
            .bind(request_id)
            .fetch_optional(&self.pool)
            .await?;
            row.map(job_from_row).transpose()
        })
        .await
    }

    async fn jobs_for_user(&self, user: &UserId, limit: usize) -> Result<Vec<Job>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.retry("listing jobs", || async {
            let rows: Vec<JobRow> = sqlx::query_as(&format!(
                "SELECT {JOB_COLUMNS} FROM jilo_jobs WHERE user_id = $1 \
                 ORDER BY created_ms DESC, id DESC LIMIT $2"
            ))
            .bind(user.as_str())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter().map(job_from_row).collect()
        })
        .await
    }

    async fn jobs_created_between(&self, from: Timestamp, to: Timestamp) -> Result<Vec<Job>> {
        self.retry("listing jobs for a report", || async {
            let rows: Vec<JobRow> = sqlx::query_as(&format!(
                "SELECT {JOB_COLUMNS} FROM jilo_jobs WHERE created_ms >= $1 AND created_ms < $2 \
                 ORDER BY created_ms, id"
            ))
            .bind(from.as_millis())
            .bind(to.as_millis())
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter().map(job_from_row).collect()
        })
        .await
    }

    async fn record_delivery(&self, delivery: &DeliveryRecord) -> Result<DeliveryOutcome> {
        self.retry("recording a webhook delivery", || async {
            let mut tx = self.begin_write().await?;
            let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM jilo_jobs WHERE id = $1")
                .bind(delivery.job.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Err(Error::not_found("job", &delivery.job).into());
            }
            let outcome = insert_delivery(&mut tx, delivery).await?;
            tx.commit().await?;
            Ok(outcome)
        })
        .await
    }

    async fn claim_due(&self, claim: &ClaimRequest) -> Result<Vec<Job>> {
        let skip_locked = match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jilo_jobs SET lease_owner = $1, lease_until_ms = $2 WHERE id IN ( \
               SELECT id FROM jilo_jobs \
               WHERE state IN ('queued', 'submitted', 'running', 'storing') \
                 AND ((next_check_ms IS NOT NULL AND next_check_ms <= $3) \
                      OR (deadline_ms <= $3 AND state IN ('queued', 'submitted', 'running'))) \
                 AND (lease_until_ms IS NULL OR lease_until_ms <= $3) \
               ORDER BY COALESCE(next_check_ms, deadline_ms) LIMIT $4 {skip_locked}) \
             RETURNING {JOB_COLUMNS}"
        );
        let now = claim.now;
        let until = now.plus(claim.lease);
        let limit = i64::try_from(claim.limit).unwrap_or(i64::MAX);
        self.retry("claiming due jobs", || async {
            let mut tx = self.begin_write().await?;
            let rows: Vec<JobRow> = sqlx::query_as(&sql)
                .bind(claim.worker.as_str())
                .bind(until.as_millis())
                .bind(now.as_millis())
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            rows.into_iter().map(job_from_row).collect()
        })
        .await
    }

    async fn renew_lease(&self, renewal: &LeaseRenewal) -> Result<bool> {
        self.retry("renewing a lease", || async {
            let mut tx = self.begin_write().await?;
            let renewed = sqlx::query(
                "UPDATE jilo_jobs SET lease_until_ms = $1 \
                 WHERE id = $2 AND lease_owner = $3 \
                   AND state IN ('queued', 'submitted', 'running', 'storing')",
            )
            .bind(renewal.until.as_millis())
            .bind(renewal.job.as_str())
            .bind(renewal.worker.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if renewed == 0 {
                let exists: Option<i64> =
                    sqlx::query_scalar("SELECT 1 FROM jilo_jobs WHERE id = $1")
                        .bind(renewal.job.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                if exists.is_none() {
                    return Err(Error::not_found("job", &renewal.job).into());
                }
            }
            tx.commit().await?;
            Ok(renewed > 0)
        })
        .await
    }

    async fn claim_alert(&self, claim: &AlertClaim) -> Result<bool> {
        let now = claim.now.as_millis();
        let window_start =
            now.saturating_sub(i64::try_from(claim.cooldown.as_millis()).unwrap_or(i64::MAX));
        self.retry("claiming an alert", || async {
            let mut tx = self.begin_write().await?;
            // One statement: the insert, or the update only when the last alert is older
            // than the window. Concurrent claims serialise on the row.
            let admitted = sqlx::query(
                "INSERT INTO jilo_alerts (subject, last_ms) VALUES ($1, $2) \
                 ON CONFLICT (subject) DO UPDATE SET last_ms = excluded.last_ms \
                 WHERE jilo_alerts.last_ms <= $3",
            )
            .bind(claim.subject.as_str())
            .bind(now)
            .bind(window_start)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok(admitted > 0)
        })
        .await
    }

    async fn cool_provider(&self, cooling: &ProviderCooling) -> Result<()> {
        self.retry("cooling a provider", || async {
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO jilo_provider_cooling (provider, until_ms) VALUES ($1, $2) \
                 ON CONFLICT (provider) DO UPDATE SET until_ms = excluded.until_ms \
                 WHERE jilo_provider_cooling.until_ms < excluded.until_ms",
            )
            .bind(cooling.provider.as_str())
            .bind(cooling.until.as_millis())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn cooling_providers(&self, now: Timestamp) -> Result<Vec<ProviderId>> {
        self.retry("reading cooling providers", || async {
            let rows: Vec<String> = sqlx::query_scalar(
                "SELECT provider FROM jilo_provider_cooling WHERE until_ms > $1 ORDER BY provider",
            )
            .bind(now.as_millis())
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.into_iter().map(ProviderId::new).collect())
        })
        .await
    }

    async fn watch(&self) -> Result<BoxStream<'static, JobEvent>> {
        self.watch_events(None).await
    }

    async fn watch_job(&self, job: &JobId) -> Result<BoxStream<'static, JobEvent>> {
        self.watch_events(Some(job)).await
    }
}
