//! S3 storage leaves the process's TLS choice to the host: with no rustls provider installed,
//! `ObjectMediaStore::s3` keeps and reads videos on its own ring configuration, and the host
//! can still install its provider afterwards (one test in its own process: the default is
//! process-wide).
#![cfg(feature = "s3")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/moto.rs"]
mod moto;

use jilo_core::{JobId, MediaStore, UserId, VideoToStore};
use jilo_store::ObjectMediaStore;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn s3_storage_installs_no_process_wide_tls_provider() {
    let Some(moto) = moto::start().await else {
        return;
    };
    moto.bucket("tls-videos").await;
    assert!(rustls::crypto::CryptoProvider::get_default().is_none());
    let media = ObjectMediaStore::s3(moto.builder("tls-videos")).unwrap();

    let server = MockServer::start().await;
    let mut body = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom".to_vec();
    body.resize(64 * 1024, 0x5A);
    Mock::given(method("GET"))
        .and(path("/v.mp4"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body.clone(), "video/mp4"))
        .expect(1)
        .mount(&server)
        .await;
    let stored = media
        .store(&VideoToStore {
            job: JobId::random(),
            user: UserId::new("tls-user"),
            url: format!("{}/v.mp4", server.uri()),
            headers: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(stored.bytes, Some(body.len() as u64));
    assert_eq!(
        media.info(&stored.key).await.unwrap().bytes,
        body.len() as u64
    );

    // Nothing was installed on the way, so the host's own choice is still open.
    assert!(rustls::crypto::CryptoProvider::get_default().is_none());
    assert!(rustls::crypto::ring::default_provider()
        .install_default()
        .is_ok());
    // A store made once the host has chosen uses object_store's own client on that choice.
    let again = ObjectMediaStore::s3(moto.builder("tls-videos")).unwrap();
    assert_eq!(
        again.info(&stored.key).await.unwrap().bytes,
        body.len() as u64
    );
}
