//! Small helpers shared by the suites and by tests of host applications.

use std::sync::Mutex;

use async_trait::async_trait;

use crate::alert::Alert;
use crate::error::Result;
use crate::ids::{JobId, ProviderId, Timestamp, UserId};
use crate::job::{Job, JobState};
use crate::traits::Notifier;
use crate::video::VideoRequest;

/// A queued job for `user`, costing `credits`, created at `at` with a 15-minute deadline and
/// due for a worker at `at`. Version 0: stores set 1 on create.
pub fn sample_job(user: &UserId, credits: i64, at: Timestamp) -> Job {
    Job {
        id: JobId::random(),
        user: user.clone(),
        request: VideoRequest::new("A calm lake at dawn, mist over the water", "sim-video", 5),
        credits,
        state: JobState::Queued,
        version: 0,
        route: vec![ProviderId::new("sim")],
        provider_index: 0,
        provider_request_id: None,
        attempts: 0,
        pending_submit: None,
        store_attempts: 0,
        provider_attempts: 0,
        progress: 0,
        stage: None,
        provider_cost: None,
        video_url: None,
        video_headers: Vec::new(),
        output: None,
        failure: None,
        failure_class: None,
        webhook: false,
        created_at: at,
        updated_at: at,
        deadline_at: at.plus(std::time::Duration::from_secs(15 * 60)),
        next_check_at: Some(at),
        lease_owner: None,
        lease_until: None,
    }
}

/// A notifier that keeps every alert it is sent, for assertions.
#[derive(Debug, Default)]
pub struct RecordingNotifier {
    alerts: Mutex<Vec<Alert>>,
}

impl RecordingNotifier {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The alerts sent so far.
    pub fn alerts(&self) -> Vec<Alert> {
        self.alerts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn notify(&self, alert: &Alert) -> Result<()> {
        self.alerts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(alert.clone());
        Ok(())
    }
}
