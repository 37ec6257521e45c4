//! The trend cache in SQL: platform searches by key and analyses by video, as JSON documents.

use std::sync::Arc;

use async_trait::async_trait;
use jilo_core::traits::{decide_source_run, KeptSourceRun};
use jilo_core::{
    CachedSearch, Platform, Result, SourceRunClaim, SourceRunState, Timestamp, TrendCache,
    ViralAnalysis,
};

use super::SqlStore;
use crate::seam::errors::StoreError;
use crate::seam::errors::StoreResult;
use crate::seam::{args, SqlRow};

/// The JSON document of a row's first column, if there is a row.
fn doc<T: serde::de::DeserializeOwned>(row: Option<SqlRow>) -> StoreResult<Option<T>> {
    Ok(row
        .map(|r| r.text(0))
        .transpose()?
        .map(|d| serde_json::from_str(&d))
        .transpose()?)
}

#[async_trait]
impl TrendCache for SqlStore {
    async fn cached_search(&self, key: &str) -> Result<Option<CachedSearch>> {
        let key = key.to_owned();
        self.read("reading a kept search", false, move |c| {
            let key = key.clone();
            Box::pin(async move {
                doc(c
                    .fetch_opt(
                        "SELECT doc FROM jilo_trend_searches WHERE query_key = $1",
                        &args![key.as_str()],
                    )
                    .await?)
            })
        })
        .await
    }

    async fn store_search(&self, key: &str, search: &CachedSearch) -> Result<()> {
        let doc = serde_json::to_string(search)
            .map_err(|e| StoreError::from(e).into_error("keeping a search"))?;
        let input = Arc::new((key.to_owned(), search.fetched_at, doc));
        self.write("keeping a search", move |c| {
            let input = Arc::clone(&input);
            Box::pin(async move {
                let (key, fetched_at, doc) = &*input;
                c.exec(
                    "INSERT INTO jilo_trend_searches (query_key, fetched_ms, doc) \
                     VALUES ($1, $2, $3) ON CONFLICT (query_key) DO UPDATE SET \
                     fetched_ms = excluded.fetched_ms, doc = excluded.doc",
                    &args![key.as_str(), fetched_at.as_millis(), doc.as_str()],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn cached_analysis(
        &self,
        platform: Platform,
        video_id: &str,
    ) -> Result<Option<ViralAnalysis>> {
        let video_id = video_id.to_owned();
        self.read("reading a kept analysis", false, move |c| {
            let video_id = video_id.clone();
            Box::pin(async move {
                doc(c
                    .fetch_opt(
                        "SELECT doc FROM jilo_trend_analyses WHERE platform = $1 AND video_id = $2",
                        &args![platform.as_str(), video_id.as_str()],
                    )
                    .await?)
            })
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
            .map_err(|e| StoreError::from(e).into_error("keeping an analysis"))?;
        let input = Arc::new((video_id.to_owned(), doc));
        self.write("keeping an analysis", move |c| {
            let input = Arc::clone(&input);
            Box::pin(async move {
                let (video_id, doc) = &*input;
                c.exec(
                    "INSERT INTO jilo_trend_analyses (platform, video_id, analyzed_ms, doc) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (platform, video_id) DO UPDATE SET \
                     analyzed_ms = excluded.analyzed_ms, doc = excluded.doc",
                    &args![
                        platform.as_str(),
                        video_id.as_str(),
                        at.as_millis(),
                        doc.as_str()
                    ],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn claim_source_run(&self, claim: &SourceRunClaim) -> Result<SourceRunState> {
        let claim = Arc::new(claim.clone());
        // A first claim made by two callers at once: one inserts, the other reads it again.
        for _ in 0..8 {
            let claim = Arc::clone(&claim);
            let taken = self
                .write("claiming a source run", move |c| {
                    let claim = Arc::clone(&claim);
                    Box::pin(async move {
                        let lock = c.dialect().row_lock;
                        let kept = c
                            .fetch_opt(
                                &format!(
                                    "SELECT owner, run_id, until_ms FROM jilo_source_runs \
                                     WHERE run_key = $1{lock}"
                                ),
                                &args![claim.key.as_str()],
                            )
                            .await?
                            .map(|r| -> Result<KeptSourceRun, StoreError> {
                                Ok(KeptSourceRun {
                                    owner: r.text(0)?,
                                    run_id: r.opt_text(1)?,
                                    until: Timestamp::from_millis(r.int(2)?),
                                })
                            })
                            .transpose()?;
                        let (state, write) = decide_source_run(kept.as_ref(), &claim);
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
                        let written = c
                            .exec(
                                sql,
                                &args![
                                    claim.key.as_str(),
                                    record.owner.as_str(),
                                    record.until.as_millis()
                                ],
                            )
                            .await?;
                        Ok((written > 0).then_some(state))
                    })
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
        let input = Arc::new((key.to_owned(), owner.to_owned(), run_id.to_owned()));
        let written = self
            .write("recording a source run", move |c| {
                let input = Arc::clone(&input);
                Box::pin(async move {
                    let (key, owner, run_id) = &*input;
                    c.exec(
                        "UPDATE jilo_source_runs SET run_id = $3, until_ms = $4 \
                         WHERE run_key = $1 AND owner = $2 AND run_id IS NULL",
                        &args![
                            key.as_str(),
                            owner.as_str(),
                            run_id.as_str(),
                            until.as_millis()
                        ],
                    )
                    .await
                })
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
        let input = Arc::new((key.to_owned(), owner.to_owned(), run_id));
        self.write("ending a source run", move |c| {
            let input = Arc::clone(&input);
            Box::pin(async move {
                let (key, owner, run_id) = &*input;
                match run_id {
                    Some(id) => {
                        c.exec(
                            "DELETE FROM jilo_source_runs WHERE run_key = $1 AND run_id = $2",
                            &args![key.as_str(), id.as_str()],
                        )
                        .await?
                    }
                    None => {
                        c.exec(
                            "DELETE FROM jilo_source_runs \
                             WHERE run_key = $1 AND owner = $2 AND run_id IS NULL",
                            &args![key.as_str(), owner.as_str()],
                        )
                        .await?
                    }
                };
                Ok(())
            })
        })
        .await
    }
}
