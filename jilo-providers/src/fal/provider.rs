//! The [`VideoProvider`] fal is: a paid submit sent once (the backup host only when the first
//! refused the connection), status, result and cancel on the queue, and reads retried.

use async_trait::async_trait;
use jilo_core::{
    CancelOutcome, Capabilities, Error, FailureClass, HttpFailure, ModelSpec, ProviderBalance,
    ProviderId, ProviderStatus, ProviderVideo, Result, StatusQuery, Submission, SubmitRequest,
    VideoProvider, WebhookDelivery, WebhookEvent,
};
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::http::{self, CallKind};

use super::config::FalProvider;
use super::config::SERVICE;
use super::errors::{class_of, map_error};
use super::wire::{app_of, model_input, video_of};

impl FalProvider {
    fn request_url(&self, query: &StatusQuery, tail: &str) -> String {
        format!(
            "{}/{}/requests/{}{tail}",
            self.queue,
            app_of(&query.provider_model),
            query.request_id
        )
    }

    async fn read(&self, url: &str) -> Result<(u16, Value)> {
        self.read_as(url, true).await
    }

    /// A GET, with the key only for fal's queue (never for the public keys' URL, which may be
    /// another host).
    pub(super) async fn read_as(&self, url: &str, with_key: bool) -> Result<(u16, Value)> {
        self.limit.acquire().await;
        let resp = http::send(
            SERVICE,
            CallKind::Read,
            &self.reads,
            |_| false,
            |f| map_error(f, &[]),
            || {
                let call = self.http.get(url).header("accept", "application/json");
                if with_key {
                    call.header("authorization", self.auth())
                } else {
                    call
                }
            },
        )
        .await?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| http::transport_error(SERVICE, CallKind::Read, e))?;
        let body = serde_json::from_str(&text).map_err(|e| Error::Protocol {
            service: SERVICE.to_owned(),
            reason: format!("the answer is not JSON: {e}"),
            response: Some(HttpFailure::new(status, &text)),
            source: None,
        })?;
        Ok((status, body))
    }
}

#[async_trait]
impl VideoProvider for FalProvider {
    fn id(&self) -> ProviderId {
        self.id.clone()
    }

    fn models(&self) -> Vec<ModelSpec> {
        self.models.clone()
    }

    /// Webhooks (signed, to the job-named URL) and cancel; no lookup by key and no balance
    /// endpoint.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            webhooks: true,
            cancel: true,
            ..Capabilities::default()
        }
    }

    async fn submit(&self, request: &SubmitRequest) -> Result<Submission> {
        http::redacted(self.key.expose_secret(), async {
            let body = model_input(&request.provider_model, &request.request);
            let mut hosts = vec![self.queue.clone()];
            hosts.extend(self.backup.clone());
            let mut last = None;
            self.limit.acquire().await;
            for host in hosts {
                let url = format!("{host}/{}", request.provider_model.trim_matches('/'));
                let mut call = self
                    .http
                    .post(&url)
                    .header("authorization", self.auth())
                    .header("accept", "application/json")
                    .json(&body);
                if let Some(hook) = &request.webhook_url {
                    call = call.query(&[("fal_webhook", hook.as_str())]);
                }
                match http::traced(SERVICE, 1, call).await {
                    Ok(resp) if resp.status().is_success() => {
                        let v: Value = resp.json().await.map_err(|e| Error::OutcomeUnknown {
                            service: SERVICE.to_owned(),
                            reason: format!("the submit's answer could not be read: {e}"),
                            source: Some(Box::new(e.without_url())),
                        })?;
                        let request_id = v["request_id"].as_str().unwrap_or_default().to_owned();
                        if request_id.is_empty() {
                            return Err(Error::OutcomeUnknown {
                                service: SERVICE.to_owned(),
                                reason: "the submit was accepted without a request id".to_owned(),
                                source: None,
                            });
                        }
                        return Ok(Submission { request_id });
                    }
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let fal_saw_it = resp.headers().contains_key("x-fal-request-id");
                        let retry_after = http::retry_after(resp.headers());
                        let text = resp.text().await.unwrap_or_default();
                        if status >= 500 && fal_saw_it {
                            return Err(Error::OutcomeUnknown {
                                service: SERVICE.to_owned(),
                                reason: format!("HTTP {status} after fal took the request"),
                                source: None,
                            });
                        }
                        return Err(map_error(
                            http::Failed {
                                status,
                                body: text,
                                retry_after,
                            },
                            &[request.request.prompt.as_str()],
                        ));
                    }
                    Err(e) if e.is_connect() => {
                        tracing::warn!(host = %host, "fal refused the connection; trying the backup host");
                        last = Some(http::transport_error(SERVICE, CallKind::PaidStart, e));
                    }
                    Err(e) => return Err(http::transport_error(SERVICE, CallKind::PaidStart, e)),
                }
            }
            Err(last.unwrap_or_else(|| Error::Unavailable {
                service: SERVICE.to_owned(),
                reason: "no queue host".to_owned(),
                response: None,
                source: None,
            }))
        })
        .await
    }

    async fn status(&self, query: &StatusQuery) -> Result<ProviderStatus> {
        http::redacted(self.key.expose_secret(), async {
            let (_, v) = self
                .read(&format!("{}?logs=1", self.request_url(query, "/status")))
                .await?;
            Ok(match v["status"].as_str() {
                Some("IN_QUEUE") => ProviderStatus::Queued {
                    position: v["queue_position"]
                        .as_u64()
                        .and_then(|p| u32::try_from(p).ok()),
                },
                Some("IN_PROGRESS") => ProviderStatus::Running {
                    progress: None,
                    stage: v["logs"]
                        .as_array()
                        .and_then(|logs| logs.last())
                        .and_then(|l| l["message"].as_str())
                        .map(str::to_owned),
                },
                Some("COMPLETED") => match v["error"].as_str() {
                    None => ProviderStatus::Succeeded { video: None },
                    Some(error) => ProviderStatus::Failed {
                        reason: error.to_owned(),
                        class: class_of(v["error_type"].as_str()),
                    },
                },
                other => ProviderStatus::Failed {
                    reason: format!(
                        "fal reported the unknown status {}",
                        other.unwrap_or("(none)")
                    ),
                    class: FailureClass::Permanent,
                },
            })
        })
        .await
    }

    async fn result(&self, query: &StatusQuery) -> Result<ProviderVideo> {
        http::redacted(self.key.expose_secret(), async {
            let (status, v) = self.read(&self.request_url(query, "")).await?;
            video_of(&v).ok_or_else(|| Error::Protocol {
                service: SERVICE.to_owned(),
                reason: "the result has no video URL".to_owned(),
                response: Some(HttpFailure::new(status, &v.to_string())),
                source: None,
            })
        })
        .await
    }

    async fn cancel(&self, query: &StatusQuery) -> Result<CancelOutcome> {
        http::redacted(self.key.expose_secret(), async {
            let url = self.request_url(query, "/cancel");
            self.limit.acquire().await;
            let resp = http::traced(
                SERVICE,
                1,
                self.http.put(&url).header("authorization", self.auth()),
            )
            .await
            .map_err(|e| http::transport_error(SERVICE, CallKind::Read, e))?;
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            let said = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["status"].as_str().map(str::to_owned));
            match said.as_deref() {
                Some("OK") => Ok(CancelOutcome::Cancelled),
                // Forwarded to a running app, which may finish and bill; or already done.
                Some("CANCELLATION_REQUESTED" | "ALREADY_COMPLETED") => Ok(CancelOutcome::TooLate),
                Some("NOT_FOUND") => Err(Error::not_found("request", &query.request_id)),
                _ if (200..300).contains(&status) => Ok(CancelOutcome::TooLate),
                _ => Err(map_error(
                    http::Failed {
                        status,
                        body: text,
                        retry_after: None,
                    },
                    &[],
                )),
            }
        })
        .await
    }

    async fn parse_webhook(&self, delivery: &WebhookDelivery) -> Result<WebhookEvent> {
        self.verify_webhook(delivery).await
    }

    async fn balance(&self) -> Result<Option<ProviderBalance>> {
        http::redacted(self.key.expose_secret(), async {
            // fal publishes no balance endpoint.
            Ok(None)
        })
        .await
    }
}
