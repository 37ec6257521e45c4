//! An S3-protocol server on loopback for the tests: moto's server (`pip install
//! "moto[server]"`), started per test on a free port and killed when dropped.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Moto {
    pub endpoint: String,
    child: Child,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts moto's S3 server. Without `moto_server` on the PATH the test cannot run: under CI
/// that is a failure, elsewhere the test says so and returns `None`.
pub async fn start() -> Option<Moto> {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let child = match Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "moto_server is needed for the S3 tests (pip install \"moto[server]\"): {e}"
            );
            eprintln!("moto_server not found ({e}); the S3 test does not run here");
            return None;
        }
    };
    let moto = Moto {
        endpoint: format!("http://127.0.0.1:{port}"),
        child,
    };
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "moto_server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Some(moto)
}

impl Moto {
    /// Creates a bucket (moto takes an unsigned `PUT /{bucket}`).
    pub async fn bucket(&self, name: &str) {
        // A plain-HTTP client: the process keeps no rustls default (the S3 store must work
        // without one), so the client carries ring's configuration itself.
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let answer = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            .unwrap()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(
            answer.status().is_success(),
            "creating the bucket: {answer:?}"
        );
    }

    /// S3 configuration for a bucket on this server.
    pub fn builder(&self, bucket: &str) -> jilo_store::AmazonS3Builder {
        jilo_store::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .with_virtual_hosted_style_request(false)
    }
}
