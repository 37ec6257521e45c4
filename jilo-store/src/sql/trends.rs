//! The trend cache in SQL: platform searches by key and analyses by video, as JSON documents.

use async_trait::async_trait;
use jilo_core::{CachedSearch, Platform, Result, Timestamp, TrendCache, ViralAnalysis};

use super::SqlStore;

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
}
