//! Every step of a job is logged inside a span naming the job, the user and the provider.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use jilo_core::testing::{SimFailure, SimProvider, SIM_MODEL};
use jilo_core::{Grant, InMemoryStore, QuotaStore, Studio, Timestamp, UserId, VideoRequest};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn job_steps_carry_job_user_and_provider() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let store = Arc::new(InMemoryStore::new());
    let a = Arc::new(SimProvider::new("primary"));
    a.fail_next_submits(SimFailure::OutOfFunds, 1);
    let studio = Studio::builder()
        .provider(a)
        .provider(Arc::new(SimProvider::new("backup")))
        .store(store.clone())
        .build()
        .unwrap();
    let user = UserId::new("traced-user");
    store
        .grant(&Grant::signup(user.clone(), 100, Timestamp::from_millis(0)))
        .await
        .unwrap();
    let job = studio
        .generate(
            &user,
            VideoRequest::new("A lighthouse in a storm at night", SIM_MODEL, 5),
        )
        .await
        .unwrap();

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("job transition"))
        .collect();
    assert!(lines.len() >= 3, "transitions are logged:\n{text}");
    for line in &lines {
        assert!(line.contains(&format!("job={job}")), "{line}");
        assert!(line.contains("user=traced-user"), "{line}");
        assert!(line.contains("provider="), "{line}");
    }
    assert!(
        text.contains("provider=backup"),
        "the failover is visible:\n{text}"
    );
    assert!(text.contains("submit failed"), "{text}");
}
