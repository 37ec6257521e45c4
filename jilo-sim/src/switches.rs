//! Fault switches: what each simulated service does wrong, set at start and flipped at runtime
//! (in-process through [`Switches`], or over HTTP through the admin endpoint).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::server::{self, body, reply, Answer, Req};

/// A simulated service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// fal.ai's queue.
    Fal,
    /// 速创's API and CDN.
    Suchuang,
    /// Apify's actors.
    Apify,
    /// Gemini.
    Gemini,
    /// Google OAuth and YouTube.
    Youtube,
}

impl Service {
    /// Every service.
    pub const ALL: [Service; 5] = [
        Service::Fal,
        Service::Suchuang,
        Service::Apify,
        Service::Gemini,
        Service::Youtube,
    ];

    /// The name used in the admin endpoint's paths.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Fal => "fal",
            Service::Suchuang => "suchuang",
            Service::Apify => "apify",
            Service::Gemini => "gemini",
            Service::Youtube => "youtube",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Service {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Service::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| format!("no service `{s}` (fal, suchuang, apify, gemini, youtube)"))
    }
}

/// How webhooks go out (FAL).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode", content = "secs")]
pub enum WebhookFault {
    /// Sent when the work ends.
    #[default]
    OnTime,
    /// Sent this many (simulated) seconds late.
    Late(u64),
    /// Sent twice.
    Duplicated,
    /// Never sent.
    Never,
}

/// The faults of one service. Every switch is off by default; a service only reads the
/// switches that mean something for it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceFaults {
    /// Every request answers 503 in the service's own way (an nginx page at FAL's ingress, the
    /// envelope at 速创, `UNAVAILABLE` at Gemini, `backendError` at Google): the service is down.
    pub down: bool,
    /// The next this many requests answer a 5xx (a burst), then the service recovers.
    pub server_errors: u32,
    /// Paid calls are refused: the account is out of funds.
    pub out_of_funds: bool,
    /// The key (or OAuth client) is refused.
    pub key_rejected: bool,
    /// Requests answer 429 asking to wait this many seconds (`Retry-After`; Gemini says it in
    /// the body's `RetryInfo`, as it does).
    pub rate_limited: Option<u64>,
    /// The next this many paid submits (a FAL or 速创 submit, an Apify run start or sync run)
    /// are accepted and billed but their answer is lost: the connection drops before the
    /// client reads it.
    pub lose_submit_answers: u32,
    /// How the webhooks of submits made from now on go out (FAL). At [`crate::Pace::Instant`]
    /// `late` waits a hundredth of its seconds in real time.
    pub webhooks: WebhookFault,
    /// The next this many upload chunks are cut mid-body (the connection drops).
    pub drop_uploads: u32,
    /// The next this many upload chunks find their session expired.
    pub expire_uploads: u32,
    /// The quota is used up: YouTube's daily project quota (403 `quotaExceeded`), Gemini's
    /// daily requests (429 without `RetryInfo`), Apify's monthly usage (402).
    pub quota_exhausted: bool,
    /// Prompts are blocked for safety (Gemini).
    pub block_prompts: bool,
    /// Work ends failed (a generation the provider could not make).
    pub fail_jobs: bool,
}

/// The switches of every service, shared by the simulators and whoever flips them.
#[derive(Clone, Debug, Default)]
pub struct Switches(Arc<Mutex<BTreeMap<Service, ServiceFaults>>>);

impl Switches {
    /// The faults of `service` now.
    pub fn get(&self, service: Service) -> ServiceFaults {
        self.lock().get(&service).cloned().unwrap_or_default()
    }

    /// Replaces the faults of `service`.
    pub fn set(&self, service: Service, faults: ServiceFaults) {
        self.lock().insert(service, faults);
    }

    /// Changes the faults of `service` in place.
    pub fn update(&self, service: Service, change: impl FnOnce(&mut ServiceFaults)) {
        change(self.lock().entry(service).or_default());
    }

    /// Turns every fault of every service off.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Every service's faults (services with none left out).
    pub fn all(&self) -> BTreeMap<Service, ServiceFaults> {
        self.lock()
            .iter()
            .filter(|(_, f)| **f != ServiceFaults::default())
            .map(|(s, f)| (*s, f.clone()))
            .collect()
    }

    /// Spends one of a counted fault: true when one was left (the counter goes down).
    pub(crate) fn take(
        &self,
        service: Service,
        counter: fn(&mut ServiceFaults) -> &mut u32,
    ) -> bool {
        let mut map = self.lock();
        let n = counter(map.entry(service).or_default());
        if *n > 0 {
            *n -= 1;
            true
        } else {
            false
        }
    }

    /// Applies a JSON patch (an object of switch names and values) to `service`.
    pub fn patch(&self, service: Service, patch: &Value) -> Result<ServiceFaults, String> {
        let Some(changes) = patch.as_object() else {
            return Err("a patch is a JSON object of switches".to_owned());
        };
        let mut map = self.lock();
        let current = map.entry(service).or_default();
        let mut merged = serde_json::to_value(&*current).map_err(|e| e.to_string())?;
        if let Some(fields) = merged.as_object_mut() {
            for (k, v) in changes {
                fields.insert(k.clone(), v.clone());
            }
        }
        let next: ServiceFaults = serde_json::from_value(merged).map_err(|e| e.to_string())?;
        *current = next.clone();
        Ok(next)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Service, ServiceFaults>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reads `service:switch[=value]` (as `jilo-sim --fault` takes it) into the service and a
/// patch for [`Switches::patch`]: a bare switch is `true`, a number or boolean is itself, and
/// `webhooks=on_time|late|duplicated|never` names the mode (`late` waits 600 s).
///
/// ```
/// use jilo_sim::{parse_fault, Service, Switches};
/// let (service, patch) = parse_fault("fal:webhooks=never").unwrap();
/// let switches = Switches::default();
/// switches.patch(service, &patch).unwrap();
/// assert_eq!(service, Service::Fal);
/// assert!(parse_fault("fal:rate_limited=soon").is_err());
/// ```
pub fn parse_fault(arg: &str) -> Result<(Service, Value), String> {
    let (service, switch) = arg
        .split_once(':')
        .ok_or_else(|| format!("`{arg}` is not SERVICE:SWITCH"))?;
    let service: Service = service.parse()?;
    let (name, value) = match switch.split_once('=') {
        None => (switch, json!(true)),
        Some(("webhooks", "late")) => ("webhooks", json!({"mode": "late", "secs": 600})),
        Some(("webhooks", mode)) => ("webhooks", json!({ "mode": mode })),
        Some((name, v)) => (
            name,
            v.parse::<u64>()
                .map(Value::from)
                .or_else(|_| v.parse::<bool>().map(Value::from))
                .map_err(|_| format!("`{v}` is not a number or a boolean"))?,
        ),
    };
    Ok((service, json!({ name: value })))
}

/// Starts the admin endpoint: `GET /faults` lists the switches that are on,
/// `POST /faults/{service}` merges a JSON object of switches, `DELETE /faults` clears all.
pub(crate) async fn serve_admin(
    addr: SocketAddr,
    switches: Switches,
) -> std::io::Result<(String, crate::Task)> {
    let listener = server::bind(addr).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = server::serve(listener, move |req| {
        let switches = switches.clone();
        async move { admin(switches, req).await }
    });
    Ok((url, crate::Task::new(task)))
}

async fn admin(switches: Switches, req: Req) -> Answer {
    let path = req.uri().path().to_owned();
    let method = req.method().as_str().to_owned();
    match (method.as_str(), path.trim_end_matches('/')) {
        ("GET", "/faults") => reply(200, json!(switches.all())),
        ("DELETE", "/faults") => {
            switches.clear();
            reply(200, json!({}))
        }
        ("POST", p) if p.starts_with("/faults/") => {
            let name = p.trim_start_matches("/faults/");
            let service = match name.parse::<Service>() {
                Ok(s) => s,
                Err(e) => return reply(404, json!({"error": e})),
            };
            let body = body(req).await;
            let patch: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => return reply(400, json!({"error": format!("not JSON: {e}")})),
            };
            match switches.patch(service, &patch) {
                Ok(now) => {
                    tracing::info!(target: "jilo_sim", %service, ?now, "faults switched");
                    reply(200, json!(now))
                }
                Err(e) => reply(400, json!({"error": e})),
            }
        }
        _ => reply(
            404,
            json!({"error": "GET /faults, POST /faults/{service}, DELETE /faults"}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_changes_only_what_it_names_and_refuses_unknown_switches() {
        let s = Switches::default();
        s.update(Service::Fal, |f| f.down = true);
        let now = s
            .patch(
                Service::Fal,
                &json!({"rate_limited": 5, "webhooks": {"mode": "late", "secs": 30}}),
            )
            .unwrap();
        assert!(now.down);
        assert_eq!(now.rate_limited, Some(5));
        assert_eq!(now.webhooks, WebhookFault::Late(30));
        assert!(s.patch(Service::Fal, &json!({"no_such": true})).is_err());
        assert_eq!(s.get(Service::Fal), now);
        s.update(Service::Apify, |f| f.server_errors = 1);
        assert!(s.take(Service::Apify, |f| &mut f.server_errors));
        assert!(!s.take(Service::Apify, |f| &mut f.server_errors));
    }
}
