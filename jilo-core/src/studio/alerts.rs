//! One alert per subject per cooldown, and providers cooled after funds or key failures.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::ids::{ProviderId, Timestamp};

/// Remembers when each subject was last alerted, so a provider out of funds is one alert and
/// not one per job.
#[derive(Debug, Default)]
pub(crate) struct AlertGate {
    last: Mutex<HashMap<String, Timestamp>>,
}

impl AlertGate {
    /// Whether an alert on `subject` should go out now; records it when so.
    pub(crate) fn admit(&self, subject: &str, now: Timestamp, cooldown: Duration) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match last.get(subject) {
            Some(at) if now.since(*at) < cooldown => false,
            _ => {
                last.insert(subject.to_owned(), now);
                true
            }
        }
    }
}

/// Providers to try last for new jobs until a time, after they ran out of funds or rejected
/// the key.
#[derive(Debug, Default)]
pub(crate) struct ProviderHealth {
    cooling: Mutex<HashMap<ProviderId, Timestamp>>,
}

impl ProviderHealth {
    pub(crate) fn cool(&self, provider: &ProviderId, until: Timestamp) {
        let mut c = self.cooling.lock().unwrap_or_else(|p| p.into_inner());
        c.insert(provider.clone(), until);
    }

    pub(crate) fn is_cooling(&self, provider: &ProviderId, now: Timestamp) -> bool {
        let c = self.cooling.lock().unwrap_or_else(|p| p.into_inner());
        c.get(provider).is_some_and(|until| *until > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_admits_once_per_cooldown() {
        let gate = AlertGate::default();
        let t = Timestamp::from_millis(1_000);
        let hour = Duration::from_secs(3600);
        assert!(gate.admit("out-of-funds:a", t, hour));
        assert!(!gate.admit("out-of-funds:a", t.plus(Duration::from_secs(60)), hour));
        assert!(gate.admit("out-of-funds:b", t, hour));
        assert!(gate.admit("out-of-funds:a", t.plus(hour), hour));
    }

    #[test]
    fn cooling_expires() {
        let h = ProviderHealth::default();
        let p = ProviderId::new("a");
        let t = Timestamp::from_millis(0);
        h.cool(&p, t.plus(Duration::from_secs(10)));
        assert!(h.is_cooling(&p, t));
        assert!(!h.is_cooling(&p, t.plus(Duration::from_secs(10))));
    }
}
