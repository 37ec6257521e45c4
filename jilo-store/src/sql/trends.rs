//! The trend cache in SQL: platform searches by key and analyses by video, as JSON documents.

use async_trait::async_trait;
use jilo_core::traits::{decide_source_run, KeptSourceRun};
use jilo_core::{
    CachedSearch, Platform, Result, SourceRunClaim, SourceRunState, Timestamp, TrendCache,
    ViralAnalysis,
};
use sqlx::Row;

use super::errors::StoreResult;
use super::{Backend, SqlStore};

#[async_trait]
impl TrendCache for SqlStore {
    async fn cached_search(&self, key: &str) -> Result<Option<CachedSearch>> {
        self.retry("reading a kept search", || async {
            let doc: Option<String> =
                sqlx::query_scalar("SELECT doc FROM jilo_trend_searches WHERE query_key = $1")
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?;
            Ok(doc.map(|d| serde_json::from_str(&d)).transpose()?)
        })
        .await
    }

    async fn store_search(&self, key: &str, search: &CachedSearch) -> Result<()> {
        let doc = serde_json::to_string(search)
            .map_err(|e| super::errors::StoreError::from(e).into_error("keeping a search"))?;
        self.retry("keeping a search", || async {
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO jilo_trend_searches (query_key, fetched_ms, doc) VALUES ($1, $2, $3) \
                 ON CONFLICT (query_key) DO UPDATE SET fetched_ms = excluded.fetched_ms, \
                 doc = excluded.doc",
            )
            .bind(key)
            .bind(search.fetched_at.as_millis())
            .bind(doc.as_str())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn cached_analysis(
        &self,
        platform: Platform,
        video_id: &str,
    ) -> Result<Option<ViralAnalysis>> {
        self.retry("reading a kept analysis", || async {
            let doc: Option<String> = sqlx::query_scalar(
                "SELECT doc FROM jilo_trend_analyses WHERE platform = $1 AND video_id = $2",
            )
            .bind(platform.as_str())
            .bind(video_id)
            .fetch_optional(&self.pool)
            .await?;
            Ok(doc.map(|d| serde_json::from_str(&d)).transpose()?)
        })
        .await
    }

    async fn store_analysis(
        &self,
        platform: Platform,
        video_id: &str,
        analysis: &ViralAnalysis,
        at: Timestamp,
    ) -> Result<()> {
        let doc = serde_json::to_string(analysis)
            .map_err(|e| super::errors::StoreError::from(e).into_error("keeping an analysis"))?;
        self.retry("keeping an analysis", || async {
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO jilo_trend_analyses (platform, video_id, analyzed_ms, doc) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (platform, video_id) DO UPDATE SET \
                 analyzed_ms = excluded.analyzed_ms, doc = excluded.doc",
            )
            .bind(platform.as_str())
            .bind(video_id)
            .bind(at.as_millis())
            .bind(doc.as_str())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn claim_source_run(&self, claim: &SourceRunClaim) -> Result<SourceRunState> {
        let lock = if self.backend == Backend::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        let read = format!(
            "SELECT owner, run_id, until_ms FROM jilo_source_runs WHERE run_key = $1{lock}"
        );
        // A first claim made by two callers at once: one inserts, the other reads it again.
        for _ in 0..8 {
            let taken = self
                .retry("claiming a source run", || async {
                    let mut tx = self.begin_write().await?;
                    let row = sqlx::query(&read)
                        .bind(claim.key.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                    let kept = row
                        .map(|r| -> StoreResult<KeptSourceRun> {
                            Ok(KeptSourceRun {
                                owner: r.try_get(0)?,
                                run_id: r.try_get(1)?,
                                until: Timestamp::from_millis(r.try_get(2)?),
                            })
                        })
                        .transpose()?;
                    let (state, write) = decide_source_run(kept.as_ref(), claim);
                    let Some(record) = write else {
                        return Ok(Some(state));
                    };
                    let sql = if kept.is_some() {
                        "UPDATE jilo_source_runs SET owner = $2, run_id = NULL, until_ms = $3 \
                         WHERE run_key = $1"
                    } else {
                        "INSERT INTO jilo_source_runs (run_key, owner, run_id, until_ms) \
                         VALUES ($1, $2, NULL, $3) ON CONFLICT (run_key) DO NOTHING"
                    };
                    let written = sqlx::query(sql)
                        .bind(claim.key.as_str())
                        .bind(record.owner.as_str())
                        .bind(record.until.as_millis())
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if written == 0 {
                        return Ok(None);
                    }
                    tx.commit().await?;
                    Ok(Some(state))
                })
                .await?;
            if let Some(state) = taken {
                return Ok(state);
            }
        }
        Err(jilo_core::Error::lost_race(
            "the source run's claim kept changing",
        ))
    }

    async fn record_source_run(
        &self,
        key: &str,
        owner: &str,
        run_id: &str,
        until: Timestamp,
    ) -> Result<()> {
        let written = self
            .retry("recording a source run", || async {
                let mut tx = self.begin_write().await?;
                let n = sqlx::query(
                    "UPDATE jilo_source_runs SET run_id = $3, until_ms = $4 \
                     WHERE run_key = $1 AND owner = $2 AND run_id IS NULL",
                )
                .bind(key)
                .bind(owner)
                .bind(run_id)
                .bind(until.as_millis())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok(n)
            })
            .await?;
        if written == 0 {
            return Err(jilo_core::Error::lost_race(format!(
                "the claim on the run of `{key}` was taken over"
            )));
        }
        Ok(())
    }

    async fn end_source_run(&self, key: &str, owner: &str, run_id: Option<String>) -> Result<()> {
        self.retry("ending a source run", || async {
            let mut tx = self.begin_write().await?;
            match &run_id {
                Some(id) => {
                    sqlx::query("DELETE FROM jilo_source_runs WHERE run_key = $1 AND run_id = $2")
                        .bind(key)
                        .bind(id.as_str())
                        .execute(&mut *tx)
                        .await?
                }
                None => {
                    sqlx::query(
                        "DELETE FROM jilo_source_runs \
                         WHERE run_key = $1 AND owner = $2 AND run_id IS NULL",
                    )
                    .bind(key)
                    .bind(owner)
                    .execute(&mut *tx)
                    .await?
                }
            };
            tx.commit().await?;
            Ok(())
        })
        .await
    }
}
