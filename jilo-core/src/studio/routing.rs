//! Which providers a request goes to, and how a job's request is named at its provider.

use crate::error::{Error, Result};
use crate::ids::ProviderId;
use crate::job::Job;
use crate::traits::StatusQuery;
use crate::video::{ModelSpec, VideoRequest};

use super::shared::{Inner, RegisteredProvider};

/// The status query for a job's current provider request.
pub(crate) fn status_query(job: &Job, provider: &RegisteredProvider) -> StatusQuery {
    StatusQuery {
        request_id: job.provider_request_id.clone().unwrap_or_default(),
        provider_model: provider_model(provider, &job.request.model),
    }
}

/// The provider's own name for one of jilo's model ids.
pub(crate) fn provider_model(provider: &RegisteredProvider, model: &str) -> String {
    provider
        .models
        .iter()
        .find(|m| m.id == model)
        .map(|m| m.provider_model.clone())
        .unwrap_or_else(|| model.to_owned())
}

impl Inner {
    pub(crate) fn provider(&self, id: &ProviderId) -> Option<&RegisteredProvider> {
        self.providers.iter().find(|p| &p.id == id)
    }

    /// The providers offering the request, healthy ones first, and the first one's spec.
    pub(crate) async fn route_for(
        &self,
        request: &VideoRequest,
    ) -> Result<(Vec<ProviderId>, ModelSpec)> {
        let offering: Vec<(&RegisteredProvider, &ModelSpec)> = self
            .providers
            .iter()
            .filter_map(|p| {
                p.models
                    .iter()
                    .find(|m| m.id == request.model)
                    .map(|m| (p, m))
            })
            .collect();
        if offering.is_empty() {
            let known: Vec<&str> = self
                .providers
                .iter()
                .flat_map(|p| p.models.iter().map(|m| m.id.as_str()))
                .collect();
            return Err(Error::invalid(
                "model",
                format!(
                    "no provider offers `{}`; offered: {}",
                    request.model,
                    known.join(", ")
                ),
            ));
        }
        let fitting: Vec<(&RegisteredProvider, &ModelSpec)> = offering
            .iter()
            .filter(|(_, m)| m.offers(request.duration_secs, request.aspect_ratio))
            .copied()
            .collect();
        if fitting.is_empty() {
            let (field, offered) = if offering
                .iter()
                .any(|(_, m)| m.durations.contains(&request.duration_secs))
            {
                let mut ratios: Vec<&str> = offering
                    .iter()
                    .flat_map(|(_, m)| m.aspect_ratios.iter().map(|r| r.as_str()))
                    .collect();
                ratios.dedup();
                ("aspect_ratio", ratios.join(", "))
            } else {
                let mut durations: Vec<u32> = offering
                    .iter()
                    .flat_map(|(_, m)| m.durations.iter().copied())
                    .collect();
                durations.sort_unstable();
                durations.dedup();
                let list: Vec<String> = durations.iter().map(|d| format!("{d}s")).collect();
                ("duration_secs", list.join(", "))
            };
            return Err(Error::invalid(
                field,
                format!("model `{}` offers only {offered}", request.model),
            ));
        }
        let cooling_now = if fitting.len() > 1 {
            match self.alerts.cooling_providers(self.clock.now()).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "reading cooling providers failed; routing in order");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let (mut healthy, cooling): (Vec<_>, Vec<_>) = fitting
            .into_iter()
            .partition(|(p, _)| !cooling_now.contains(&p.id));
        healthy.extend(cooling);
        let spec = healthy[0].1.clone();
        let route = healthy.iter().map(|(p, _)| p.id.clone()).collect();
        Ok((route, spec))
    }
}
