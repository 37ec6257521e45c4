//! The HTTP client of S3 storage when the process has no rustls provider of its own.
//!
//! object_store builds its S3 client from rustls's process-wide default provider, and reqwest is
//! built without one of its own (jilo keeps one TLS stack, rustls on ring). Installing ring as
//! that default would override nothing but refuse a host's later choice, so when no default is
//! installed [`ObjectMediaStore::s3`](crate::ObjectMediaStore::s3) connects through
//! [`RingS3Connector`] instead: the same client object_store would build, with ring's TLS
//! configuration carried by the client rather than installed for the process.

use std::time::Duration;

use object_store::client::{HttpClient, HttpConnector};
use object_store::{ClientConfigKey, ClientOptions};

/// An object_store [`HttpConnector`] whose clients carry rustls on ring with the platform's
/// certificate verifier, leaving the process-wide default provider alone.
///
/// It applies the options object_store exposes by key (`allow_http`, timeouts, pool and HTTP/2
/// settings, `http1_only`/`http2_only`, the proxy and its exclusions, the user agent). The
/// options that change certificate checking (`allow_invalid_certificates`,
/// `no_system_certificates`, a proxy CA certificate) are refused with an error: to use them,
/// install a rustls `CryptoProvider` for the process before calling
/// [`ObjectMediaStore::s3`](crate::ObjectMediaStore::s3), which then leaves the builder's own
/// connector in place. Root certificates added with `with_root_certificate` cannot be read
/// back from the options and are not applied here either, nor are default headers or
/// object_store's address shuffling.
///
/// ```no_run
/// use jilo_store::{AmazonS3Builder, RingS3Connector};
/// let s3 = AmazonS3Builder::from_env()
///     .with_bucket_name("videos")
///     .with_http_connector(RingS3Connector)
///     .build();
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct RingS3Connector;

impl HttpConnector for RingS3Connector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        client(options)
            .map(HttpClient::new)
            .map_err(|message| object_store::Error::Generic {
                store: "S3",
                source: message.into(),
            })
    }
}

fn flag(options: &ClientOptions, key: ClientConfigKey) -> Result<bool, String> {
    match options.get_config_value(&key) {
        None => Ok(false),
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "on" | "yes" | "y" => Ok(true),
            "0" | "false" | "off" | "no" | "n" => Ok(false),
            _ => Err(format!("{} is not a boolean: {v:?}", key.as_ref())),
        },
    }
}

fn duration(options: &ClientOptions, key: ClientConfigKey) -> Result<Option<Duration>, String> {
    options
        .get_config_value(&key)
        .map(|v| {
            humantime::parse_duration(&v)
                .map_err(|e| format!("{} is not a duration ({v:?}): {e}", key.as_ref()))
        })
        .transpose()
}

fn number<T: std::str::FromStr>(
    options: &ClientOptions,
    key: ClientConfigKey,
) -> Result<Option<T>, String> {
    options
        .get_config_value(&key)
        .map(|v| {
            v.parse()
                .map_err(|_| format!("{} is not a number: {v:?}", key.as_ref()))
        })
        .transpose()
}

fn client(options: &ClientOptions) -> Result<reqwest::Client, String> {
    for key in [
        ClientConfigKey::AllowInvalidCertificates,
        ClientConfigKey::NoSystemCertificates,
    ] {
        if flag(options, key)? {
            return Err(format!(
                "{} needs the process's own rustls provider: install one before configuring S3",
                key.as_ref()
            ));
        }
    }
    if options
        .get_config_value(&ClientConfigKey::ProxyCaCertificate)
        .is_some()
    {
        return Err(
            "proxy_ca_certificate needs the process's own rustls provider: install one before \
             configuring S3"
                .to_owned(),
        );
    }
    let user_agent = options
        .get_config_value(&ClientConfigKey::UserAgent)
        .unwrap_or_else(|| concat!("jilo-store/", env!("CARGO_PKG_VERSION")).to_owned());
    // As object_store's own client: no transparent decompression (it would break sizes).
    let mut builder = reqwest::Client::builder()
        .no_gzip()
        .no_brotli()
        .no_zstd()
        .no_deflate()
        .tls_backend_preconfigured(crate::tls::ring_tls()?)
        .user_agent(user_agent)
        .https_only(!flag(options, ClientConfigKey::AllowHttp)?);
    if let Some(url) = options.get_config_value(&ClientConfigKey::ProxyUrl) {
        let mut proxy =
            reqwest::Proxy::all(&url).map_err(|e| format!("proxy_url is not usable: {e}"))?;
        if let Some(excludes) = options.get_config_value(&ClientConfigKey::ProxyExcludes) {
            proxy = proxy.no_proxy(reqwest::NoProxy::from_string(&excludes));
        }
        builder = builder.proxy(proxy);
    }
    if let Some(t) = duration(options, ClientConfigKey::Timeout)? {
        builder = builder.timeout(t);
    }
    if let Some(t) = duration(options, ClientConfigKey::ConnectTimeout)? {
        builder = builder.connect_timeout(t);
    }
    if let Some(t) = duration(options, ClientConfigKey::ReadTimeout)? {
        builder = builder.read_timeout(t);
    }
    if let Some(t) = duration(options, ClientConfigKey::PoolIdleTimeout)? {
        builder = builder.pool_idle_timeout(t);
    }
    if let Some(n) = number::<usize>(options, ClientConfigKey::PoolMaxIdlePerHost)? {
        builder = builder.pool_max_idle_per_host(n);
    }
    if let Some(t) = duration(options, ClientConfigKey::Http2KeepAliveInterval)? {
        builder = builder.http2_keep_alive_interval(t);
    }
    if let Some(t) = duration(options, ClientConfigKey::Http2KeepAliveTimeout)? {
        builder = builder.http2_keep_alive_timeout(t);
    }
    if flag(options, ClientConfigKey::Http2KeepAliveWhileIdle)? {
        builder = builder.http2_keep_alive_while_idle(true);
    }
    if let Some(n) = number::<u32>(options, ClientConfigKey::Http2MaxFrameSize)? {
        builder = builder.http2_max_frame_size(Some(n));
    }
    if flag(options, ClientConfigKey::Http1Only)? {
        builder = builder.http1_only();
    }
    if flag(options, ClientConfigKey::Http2Only)? {
        builder = builder.http2_prior_knowledge();
    }
    builder
        .build()
        .map_err(|e| format!("no S3 client could be made: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_that_change_certificate_checks_are_refused_not_ignored() {
        let options = ClientOptions::new().with_allow_invalid_certificates(true);
        let refused = client(&options).map(|_| ()).unwrap_err();
        assert!(refused.contains("allow_invalid_certificates"), "{refused}");
        let options = ClientOptions::new().with_config(ClientConfigKey::Timeout, "soon");
        let refused = client(&options).map(|_| ()).unwrap_err();
        assert!(refused.contains("timeout"), "{refused}");
        assert!(client(&ClientOptions::new().with_timeout(Duration::from_secs(5))).is_ok());
    }
}
