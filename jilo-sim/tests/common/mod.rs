//! A webhook receiver on loopback for the tests: every POST it gets arrives on a channel
//! (a readiness signal, not a sleep), answered with the status the test sets.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;

pub struct Delivery {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

pub struct Receiver {
    pub url: String,
    pub rx: mpsc::UnboundedReceiver<Delivery>,
    pub answer: Arc<AtomicU16>,
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::unbounded_channel();
        let answer = Arc::new(AtomicU16::new(200));
        let status = answer.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                let status = status.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let tx = tx.clone();
                            let status = status.clone();
                            async move {
                                let path = req.uri().path().to_owned();
                                let headers = req
                                    .headers()
                                    .iter()
                                    .map(|(k, v)| {
                                        (k.to_string(), v.to_str().unwrap_or("").to_owned())
                                    })
                                    .collect();
                                let body =
                                    req.into_body().collect().await.unwrap().to_bytes().to_vec();
                                let code = status.load(Ordering::SeqCst);
                                let _ = tx.send(Delivery {
                                    path,
                                    headers,
                                    body,
                                });
                                Ok::<_, std::convert::Infallible>(
                                    hyper::Response::builder()
                                        .status(code)
                                        .body(Full::new(Bytes::new()))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { url, rx, answer }
    }

    pub async fn next(&mut self) -> Delivery {
        self.rx.recv().await.expect("the receiver is open")
    }
}

/// A client for plain reads of what the simulators serve.
pub fn http() -> reqwest::Client {
    jilo_providers::http::client(std::time::Duration::from_secs(30)).unwrap()
}
