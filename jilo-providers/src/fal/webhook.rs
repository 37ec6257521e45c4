//! fal's webhooks: the signing keys from the published JWKS (cached a day, refetched at most
//! once a gap when none verifies) and a delivery verified before its body is read.

use std::time::{Instant, UNIX_EPOCH};

use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use jilo_core::{Error, FailureClass, ProviderStatus, Result, WebhookDelivery, WebhookEvent};
use secrecy::ExposeSecret;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::http;

use super::config::FalProvider;
use super::config::{JWKS_TTL, SERVICE, WEBHOOK_TOLERANCE};
use super::errors::unauthorized;
use super::wire::video_of;

impl FalProvider {
    /// The signing keys, fetched when missing or older than a day, or (`refresh`) when none
    /// verified and the last fetch is over a minute old.
    async fn keys(&self, refresh: bool) -> Result<Vec<VerifyingKey>> {
        let mut jwks = self.jwks.lock().await;
        let stale = jwks.fetched.is_none_or(|t| t.elapsed() > JWKS_TTL);
        let may_refetch = jwks.fetched.is_none_or(|t| t.elapsed() >= self.refetch_gap);
        if stale || (refresh && may_refetch) {
            let url = self.jwks_url.clone();
            let (_, body) = self.read_as(&url, false).await?;
            jwks.keys = body["keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|k| k["kty"] == "OKP" && k["crv"] == "Ed25519")
                .filter_map(|k| {
                    let x = k["x"].as_str()?.trim_end_matches('=');
                    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(x)
                        .ok()?;
                    VerifyingKey::from_bytes(&bytes.try_into().ok()?).ok()
                })
                .collect();
            jwks.fetched = Some(Instant::now());
        }
        Ok(jwks.keys.clone())
    }

    /// Verifies a delivery (headers, account, timestamp, Ed25519 signature against the
    /// published keys) and reads the event it carries.
    pub(super) async fn verify_webhook(&self, delivery: &WebhookDelivery) -> Result<WebhookEvent> {
        http::redacted(self.key.expose_secret(), async {
            let header = |n: &str| {
                delivery
                    .header(n)
                    .ok_or_else(|| unauthorized(&format!("no {n}")))
            };
            let request_id = header("x-fal-webhook-request-id")?;
            let user_id = header("x-fal-webhook-user-id")?;
            let timestamp = header("x-fal-webhook-timestamp")?;
            let signature = header("x-fal-webhook-signature")?;
            if let Some(ours) = &self.user_id {
                if user_id != ours {
                    return Err(unauthorized("signed for another fal account"));
                }
            }
            let sent = timestamp
                .trim()
                .parse::<u64>()
                .map_err(|_| unauthorized("bad timestamp"))?;
            let now = self
                .now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            if now.abs_diff(sent) > WEBHOOK_TOLERANCE.as_secs() {
                return Err(unauthorized("timestamp outside the 300 s window"));
            }
            let signature = hex::decode(signature.trim())
                .ok()
                .and_then(|b| Signature::from_slice(&b).ok())
                .ok_or_else(|| unauthorized("bad signature encoding"))?;
            let digest = hex::encode(Sha256::digest(&delivery.body));
            let message = format!("{request_id}\n{user_id}\n{timestamp}\n{digest}");
            let verified = |keys: &[VerifyingKey]| {
                keys.iter()
                    .any(|k| k.verify(message.as_bytes(), &signature).is_ok())
            };
            if !verified(&self.keys(false).await?) && !verified(&self.keys(true).await?) {
                return Err(unauthorized("signature does not verify"));
            }
            // Verified: now read the body (never re-serialised; seeds exceed i64).
            let body: Value =
                serde_json::from_slice(&delivery.body).map_err(|e| Error::Protocol {
                    service: SERVICE.to_owned(),
                    reason: format!("webhook body: {e}"),
                    response: None,
                    source: Some(Box::new(e)),
                })?;
            if body["request_id"].as_str() != Some(request_id) {
                return Err(unauthorized("the body names another request"));
            }
            let status = match body["status"].as_str() {
                Some("OK") => match video_of(&body["payload"]) {
                    Some(video) => ProviderStatus::Succeeded { video: Some(video) },
                    None => ProviderStatus::Succeeded { video: None },
                },
                _ => {
                    let reason = body["error"]
                        .as_str()
                        .or(body["payload_error"].as_str())
                        .unwrap_or("fal reported an error")
                        .to_owned();
                    // "Invalid status code: 503": fal's infrastructure failed (not billed), as the
                    // status poll's runner errors are: worth another try.
                    let server_side = reason
                        .rsplit(':')
                        .next()
                        .and_then(|c| c.trim().parse::<u16>().ok())
                        .is_some_and(|c| c >= 500);
                    ProviderStatus::Failed {
                        reason,
                        class: if server_side {
                            FailureClass::Retryable
                        } else {
                            FailureClass::Permanent
                        },
                    }
                }
            };
            Ok(WebhookEvent {
                request_id: request_id.to_owned(),
                // fal sends no delivery id: the body's digest stands for it (a retry of the same
                // delivery is the same bytes).
                delivery_id: format!("sha256:{digest}"),
                status,
            })
        })
        .await
    }
}
