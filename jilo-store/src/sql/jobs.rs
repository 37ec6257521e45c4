//! The job store in SQL: compare-and-set transitions carrying their credit changes, claims
//! with leases, webhook deduplication.

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use jilo_core::{
    ClaimRequest, CreditHold, DeliveryOutcome, DeliveryRecord, Error, HoldState, Job, JobEvent,
    JobId, JobState, JobStore, JobUpdate, LeaseRenewal, ProviderId, Reservation, Result, Timestamp,
    UserId,
};

use super::ledger::{check_grant, end_hold_in, grant_in, reserve_in};
use super::SqlStore;
use crate::seam::errors::{StoreError, StoreResult};
use crate::seam::{args, Conn, SqlRow};

const JOB_COLUMNS: &str = "doc, version, lease_owner, lease_until_ms";

/// The job as stored: the document, with the columns claims write over it.
fn job_from_row(row: &SqlRow) -> StoreResult<Job> {
    let mut job: Job = serde_json::from_str(&row.text(0)?)?;
    job.version = u64::try_from(row.int(1)?).unwrap_or(0);
    job.lease_owner = row.opt_text(2)?;
    job.lease_until = row.opt_int(3)?.map(Timestamp::from_millis);
    Ok(job)
}

fn jobs_from_rows(rows: &[SqlRow]) -> StoreResult<Vec<Job>> {
    rows.iter().map(job_from_row).collect()
}

fn version_i64(v: u64) -> StoreResult<i64> {
    Ok(i64::try_from(v).map_err(|_| Error::invalid("version", "out of range"))?)
}

/// The states a worker looks after, in SQL: the jobs not yet at an end.
fn open_states() -> String {
    sql_states(JobState::ALL.iter().filter(|s| !s.is_terminal()))
}

/// The states whose deadline a worker enforces: still waiting on the provider.
fn deadline_states() -> String {
    sql_states(JobState::ALL.iter().filter(|s| s.awaits_result()))
}

fn sql_states<'a>(states: impl Iterator<Item = &'a JobState>) -> String {
    states
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn job_exists(c: &mut dyn Conn, id: &JobId) -> StoreResult<bool> {
    c.exists("SELECT 1 FROM jilo_jobs WHERE id = $1", &args![id.as_str()])
        .await
}

/// Creates a job (at version 1) and takes its hold.
async fn create_in(c: &mut dyn Conn, job: &Job, hold: &Reservation) -> StoreResult<CreditHold> {
    if job_exists(c, &job.id).await? {
        return Err(Error::already_exists("job", &job.id).into());
    }
    let doc = serde_json::to_string(job)?;
    c.exec(
        "INSERT INTO jilo_jobs (id, user_id, state, version, provider, provider_request_id, \
         created_ms, deadline_ms, next_check_ms, lease_owner, lease_until_ms, doc) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &args![
            job.id.as_str(),
            job.user.as_str(),
            job.state.as_str(),
            version_i64(job.version)?,
            job.provider().map(|p| p.as_str()),
            job.provider_request_id.as_deref(),
            job.created_at.as_millis(),
            job.deadline_at.as_millis(),
            job.next_check_at.map(Timestamp::as_millis),
            job.lease_owner.as_deref(),
            job.lease_until.map(Timestamp::as_millis),
            doc.as_str(),
        ],
    )
    .await?;
    remember_request(c, job).await?;
    let taken = reserve_in(c, hold).await?;
    notify(c, job).await?;
    Ok(taken)
}

/// Remembers the job's current provider request, if it has one.
async fn remember_request(c: &mut dyn Conn, job: &Job) -> StoreResult<()> {
    if let (Some(provider), Some(request_id)) = (job.provider(), &job.provider_request_id) {
        c.exec(
            "INSERT INTO jilo_job_requests (provider, request_id, job_id) VALUES ($1, $2, $3) \
             ON CONFLICT (provider, request_id) DO NOTHING",
            &args![provider.as_str(), request_id.as_str(), job.id.as_str()],
        )
        .await?;
    }
    Ok(())
}

/// Remembers a webhook delivery inside a transaction; `Duplicate` when it was seen.
async fn insert_delivery(
    c: &mut dyn Conn,
    delivery: &DeliveryRecord,
) -> StoreResult<DeliveryOutcome> {
    let inserted = c
        .exec(
            "INSERT INTO jilo_deliveries (provider, delivery_id, job_id, at_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (provider, delivery_id) DO NOTHING",
            &args![
                delivery.provider.as_str(),
                delivery.delivery_id.as_str(),
                delivery.job.as_str(),
                delivery.at.as_millis(),
            ],
        )
        .await?;
    Ok(if inserted == 1 {
        DeliveryOutcome::New
    } else {
        DeliveryOutcome::Duplicate
    })
}

/// Announces a job's event on commit, where the backend does so across processes.
async fn notify(c: &mut dyn Conn, job: &Job) -> StoreResult<()> {
    if let Some(sql) = c.dialect().notify {
        let payload = serde_json::to_string(&job.event())?;
        c.exec(sql, &args![payload.as_str()]).await?;
    }
    Ok(())
}

/// A compare-and-set write of `next` (its version already `expected + 1`) with the hold's
/// end, the grant and the delivery of `update`.
async fn update_in(c: &mut dyn Conn, update: &JobUpdate, next: &Job) -> StoreResult<()> {
    let doc = serde_json::to_string(next)?;
    let changed = c
        .exec(
            "UPDATE jilo_jobs SET state = $1, version = $2, provider = $3, \
             provider_request_id = $4, next_check_ms = $5, lease_owner = $6, \
             lease_until_ms = $7, deadline_ms = $8, doc = $9 \
             WHERE id = $10 AND version = $11 AND state = $12",
            &args![
                next.state.as_str(),
                version_i64(next.version)?,
                next.provider().map(|p| p.as_str()),
                next.provider_request_id.as_deref(),
                next.next_check_at.map(Timestamp::as_millis),
                next.lease_owner.as_deref(),
                next.lease_until.map(Timestamp::as_millis),
                next.deadline_at.as_millis(),
                doc.as_str(),
                next.id.as_str(),
                version_i64(update.expected_version)?,
                update.expected_state.as_str(),
            ],
        )
        .await?;
    if changed == 0 {
        let current = c
            .fetch_opt(
                "SELECT version, state FROM jilo_jobs WHERE id = $1",
                &args![next.id.as_str()],
            )
            .await?;
        return Err(match current {
            None => Error::not_found("job", &next.id),
            Some(row) => Error::lost_race(format!(
                "job {} is at version {} ({}), not {} ({})",
                next.id,
                row.int(0)?,
                row.text(1)?,
                update.expected_version,
                update.expected_state
            )),
        }
        .into());
    }
    remember_request(c, next).await?;
    if let Some(d) = &update.delivery {
        if insert_delivery(c, d).await? == DeliveryOutcome::Duplicate {
            return Err(Error::already_exists("delivery", &d.delivery_id).into());
        }
    }
    if let Some(to) = update.end_hold {
        end_hold_in(c, &next.id, to, next.updated_at).await?;
    }
    if let Some(g) = &update.grant {
        let known = c
            .exists(
                "SELECT 1 FROM jilo_accounts WHERE user_id = $1",
                &args![g.user.as_str()],
            )
            .await?;
        if !known {
            return Err(Error::not_found("user", &g.user).into());
        }
        grant_in(c, g).await?;
    }
    notify(c, next).await?;
    Ok(())
}

#[async_trait]
impl JobStore for SqlStore {
    async fn create(&self, job: &Job, hold: &Reservation) -> Result<CreditHold> {
        job.check_hold(hold)?;
        let mut stored = job.clone();
        stored.version = 1;
        let input = Arc::new((stored, hold.clone()));
        let taken = self
            .write("creating a job", {
                let input = Arc::clone(&input);
                move |c| {
                    let input = Arc::clone(&input);
                    Box::pin(async move { create_in(c, &input.0, &input.1).await })
                }
            })
            .await?;
        self.publish_local(&input.0);
        Ok(taken)
    }

    async fn job(&self, id: &JobId) -> Result<Job> {
        let id = id.clone();
        self.read("reading a job", false, move |c| {
            let id = id.clone();
            Box::pin(async move {
                let row = c
                    .fetch_opt(
                        &format!("SELECT {JOB_COLUMNS} FROM jilo_jobs WHERE id = $1"),
                        &args![id.as_str()],
                    )
                    .await?
                    .ok_or_else(|| Error::not_found("job", &id))?;
                job_from_row(&row)
            })
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
        let input = Arc::new((update.clone(), next));
        self.write("updating a job", {
            let input = Arc::clone(&input);
            move |c| {
                let input = Arc::clone(&input);
                Box::pin(async move {
                    let (update, next) = &*input;
                    update_in(c, update, next).await.map_err(|e| {
                        if e.is_unique_violation() {
                            // The only unique key an update can break: the provider request id.
                            StoreError::Rule(Error::invalid(
                                "provider_request_id",
                                format!(
                                    "another job already has request {} at provider {}",
                                    next.provider_request_id.as_deref().unwrap_or_default(),
                                    next.provider().map(|p| p.as_str()).unwrap_or_default()
                                ),
                            ))
                        } else {
                            e
                        }
                    })
                })
            }
        })
        .await?;
        let written = input.1.clone();
        self.publish_local(&written);
        Ok(written)
    }

    async fn job_by_provider_request(
        &self,
        provider: &ProviderId,
        request_id: &str,
    ) -> Result<Option<Job>> {
        let key = Arc::new((provider.clone(), request_id.to_owned()));
        self.read("finding a job by provider request", false, move |c| {
            let key = Arc::clone(&key);
            Box::pin(async move {
                c.fetch_opt(
                    &format!(
                        "SELECT {JOB_COLUMNS} FROM jilo_job_requests r \
                         JOIN jilo_jobs j ON j.id = r.job_id \
                         WHERE r.provider = $1 AND r.request_id = $2"
                    ),
                    &args![key.0.as_str(), key.1.as_str()],
                )
                .await?
                .as_ref()
                .map(job_from_row)
                .transpose()
            })
        })
        .await
    }

    async fn jobs_for_user(&self, user: &UserId, limit: usize) -> Result<Vec<Job>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let user = user.clone();
        self.read("listing jobs", false, move |c| {
            let user = user.clone();
            Box::pin(async move {
                jobs_from_rows(
                    &c.fetch(
                        &format!(
                            "SELECT {JOB_COLUMNS} FROM jilo_jobs WHERE user_id = $1 \
                             ORDER BY created_ms DESC, id DESC LIMIT $2"
                        ),
                        &args![user.as_str(), limit],
                    )
                    .await?,
                )
            })
        })
        .await
    }

    async fn jobs_created_between(&self, from: Timestamp, to: Timestamp) -> Result<Vec<Job>> {
        self.read("listing jobs for a report", false, move |c| {
            Box::pin(async move {
                jobs_from_rows(
                    &c.fetch(
                        &format!(
                            "SELECT {JOB_COLUMNS} FROM jilo_jobs \
                             WHERE created_ms >= $1 AND created_ms < $2 ORDER BY created_ms, id"
                        ),
                        &args![from.as_millis(), to.as_millis()],
                    )
                    .await?,
                )
            })
        })
        .await
    }

    async fn record_delivery(&self, delivery: &DeliveryRecord) -> Result<DeliveryOutcome> {
        let delivery = Arc::new(delivery.clone());
        self.write("recording a webhook delivery", move |c| {
            let delivery = Arc::clone(&delivery);
            Box::pin(async move {
                if !job_exists(c, &delivery.job).await? {
                    return Err(Error::not_found("job", &delivery.job).into());
                }
                insert_delivery(c, &delivery).await
            })
        })
        .await
    }

    async fn claim_due(&self, claim: &ClaimRequest) -> Result<Vec<Job>> {
        let skip_locked = self.dialect().skip_locked;
        let (open, waiting) = (open_states(), deadline_states());
        let sql = Arc::new(format!(
            "UPDATE jilo_jobs SET lease_owner = $1, lease_until_ms = $2 WHERE id IN ( \
               SELECT id FROM jilo_jobs \
               WHERE state IN ({open}) \
                 AND ((next_check_ms IS NOT NULL AND next_check_ms <= $3) \
                      OR (deadline_ms <= $3 AND state IN ({waiting}))) \
                 AND (lease_until_ms IS NULL OR lease_until_ms <= $3) \
               ORDER BY COALESCE(next_check_ms, deadline_ms) LIMIT $4{skip_locked}) \
             RETURNING {JOB_COLUMNS}"
        ));
        let now = claim.now;
        let until = now.plus(claim.lease);
        let limit = i64::try_from(claim.limit).unwrap_or(i64::MAX);
        let worker = claim.worker.clone();
        self.write("claiming due jobs", move |c| {
            let (sql, worker) = (Arc::clone(&sql), worker.clone());
            Box::pin(async move {
                jobs_from_rows(
                    &c.fetch(
                        &sql,
                        &args![worker.as_str(), until.as_millis(), now.as_millis(), limit],
                    )
                    .await?,
                )
            })
        })
        .await
    }

    async fn renew_lease(&self, renewal: &LeaseRenewal) -> Result<bool> {
        let open = open_states();
        let renewal = Arc::new(renewal.clone());
        self.write("renewing a lease", move |c| {
            let (renewal, open) = (Arc::clone(&renewal), open.clone());
            Box::pin(async move {
                let renewed = c
                    .exec(
                        &format!(
                            "UPDATE jilo_jobs SET lease_until_ms = $1 \
                             WHERE id = $2 AND lease_owner = $3 AND state IN ({open})"
                        ),
                        &args![
                            renewal.until.as_millis(),
                            renewal.job.as_str(),
                            renewal.worker.as_str(),
                        ],
                    )
                    .await?;
                if renewed == 0 && !job_exists(c, &renewal.job).await? {
                    return Err(Error::not_found("job", &renewal.job).into());
                }
                Ok(renewed > 0)
            })
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
