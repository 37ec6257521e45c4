//! The HTTP plumbing every simulator shares: a hyper server on a loopback listener, and the
//! small helpers its handlers answer with. Plain hyper rather than a framework: a simulator
//! must be able to drop a connection mid-body or answer before reading, as real servers do.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::Value;

/// What a handler answers: a response, or an I/O error that drops the connection unanswered.
pub type Answer = Result<Response<Full<Bytes>>, std::io::Error>;

/// A request as the handlers see it.
pub type Req = Request<Incoming>;

/// A listener on `addr` (port 0 for a free one).
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// A simulator as the server sees it: cloned into each request and asked for the answer.
pub(crate) trait Simulator: Clone + Send + Sync + 'static {
    /// The answer to one request.
    fn answer(self, req: Req) -> impl Future<Output = Answer> + Send;
    /// The same simulator holding the task that serves it (aborted with its last handle).
    fn with_task(self, task: Arc<crate::Task>) -> Self;
}

/// Binds `addr`, builds the simulator for its base URL and serves it.
pub(crate) async fn launch<S: Simulator>(
    addr: SocketAddr,
    build: impl FnOnce(String) -> S,
) -> std::io::Result<S> {
    let listener = bind(addr).await?;
    let sim = build(format!("http://{}", listener.local_addr()?));
    // The serving copy holds no handle to its own task, so dropping the last handle the
    // caller has stops the server.
    let serving = sim.clone();
    let task = serve(listener, move |req| serving.clone().answer(req));
    Ok(sim.with_task(Arc::new(crate::Task::new(task))))
}

/// Serves every connection on `listener` with `handle`, until the task is aborted.
pub(crate) fn serve<H, F>(
    listener: tokio::net::TcpListener,
    handle: H,
) -> tokio::task::JoinHandle<()>
where
    H: Fn(Req) -> F + Send + Sync + 'static,
    F: Future<Output = Answer> + Send + 'static,
{
    let handle = Arc::new(handle);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of descriptors or a reset handshake: give the machine a moment rather
                // than spin on a failing accept.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let handle = Arc::clone(&handle);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| handle(req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

fn build(builder: hyper::http::response::Builder, body: Bytes) -> Answer {
    builder
        .body(Full::new(body))
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// A JSON answer.
pub fn reply(status: u16, body: Value) -> Answer {
    reply_with(status, body, &[])
}

/// A JSON answer with extra headers.
pub fn reply_with(status: u16, body: Value, headers: &[(&str, String)]) -> Answer {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=UTF-8");
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    build(b, Bytes::from(body.to_string()))
}

/// An answer with no body.
pub fn empty(status: u16, headers: &[(&str, String)]) -> Answer {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    build(b.header("content-length", "0"), Bytes::new())
}

/// Raw bytes with a content type.
pub fn bytes(status: u16, content_type: &str, body: Bytes, headers: &[(&str, String)]) -> Answer {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", content_type);
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    build(b, body)
}

/// The connection goes away without an answer.
pub fn dropped() -> Answer {
    Err(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "connection dropped by the simulator",
    ))
}

/// The query string's pairs (the last of a repeated name wins).
pub fn query(req: &Req) -> HashMap<String, String> {
    url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// A header's value, when it is text.
pub fn header(req: &Req, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The whole body (empty when the client went away).
pub async fn body(req: Req) -> Bytes {
    match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    }
}

/// `METHOD /path?query`, as a request log line.
pub fn line(req: &Req) -> String {
    format!(
        "{} {}",
        req.method(),
        req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("")
    )
}

/// A random id with a prefix.
pub fn random(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// Percent-encodes for a query value.
pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
