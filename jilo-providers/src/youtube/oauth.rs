//! Google OAuth 2.0 for installed apps, on the `oauth2` crate: the authorization URL with PKCE
//! (S256), `state`, `access_type=offline` and `prompt=consent`; the code exchange; refresh;
//! revoke; and a loopback redirect for command-line hosts.

use crate::http::TracedSend;
use std::fmt;
use std::time::Duration;

use jilo_core::{Error, Result, Timestamp};
use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenType};
use oauth2::{
    AsyncHttpClient, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EmptyExtraTokenFields, HttpClientError, HttpRequest, HttpResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, StandardErrorResponse,
    StandardTokenResponse, TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::http::{env_var, required_env};

const SERVICE: &str = "google oauth";

/// Google's authorization endpoint.
pub const GOOGLE_AUTH_URL: &str = "https://accounts.google.com/o/oauth2/v2/auth";
/// Google's token endpoint.
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// Google's revocation endpoint.
pub const GOOGLE_REVOKE_URL: &str = "https://oauth2.googleapis.com/revoke";

/// The scopes jilo asks for: `youtube` (channels, videos, playlists, statistics) and
/// `youtube.upload` (uploads and thumbnails); `youtube.upload` alone cannot read the channel
/// or add to a playlist.
pub const YOUTUBE_SCOPES: [&str; 2] = [
    "https://www.googleapis.com/auth/youtube",
    "https://www.googleapis.com/auth/youtube.upload",
];

/// An access token is refreshed when it has less than this left.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Tokens from the token endpoint. `Debug` shows no token.
#[derive(Clone)]
pub struct OAuthTokens {
    /// The bearer token for API calls.
    pub access_token: SecretString,
    /// The refresh token: given on the first consent (and with `prompt=consent`), usually not
    /// on a refresh, where the old one stays valid.
    pub refresh_token: Option<SecretString>,
    /// When the access token expires.
    pub expires_at: Timestamp,
    /// The scopes granted (users can untick some on the consent screen).
    pub scopes: Vec<String>,
}

impl fmt::Debug for OAuthTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthTokens")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "set"))
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl OAuthTokens {
    /// Whether the access token expires within [`REFRESH_MARGIN`] of `now`.
    pub fn needs_refresh(&self, now: Timestamp) -> bool {
        self.expires_at <= now.plus(REFRESH_MARGIN)
    }
}

/// An authorization under way: the URL to send the user to, and what the redirect is checked
/// against. Keep it (e.g. in the user's session) until the redirect comes back. `Debug`
/// shows neither the state nor the verifier.
pub struct PendingAuthorization {
    /// Where to send the user's browser.
    pub url: String,
    /// The redirect URI the code comes back to (sent again with the exchange).
    pub redirect_uri: String,
    state: SecretString,
    verifier: SecretString,
}

impl fmt::Debug for PendingAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingAuthorization")
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

impl PendingAuthorization {
    /// The `state` sent, to compare with the redirect's.
    pub fn state(&self) -> &str {
        self.state.expose_secret()
    }

    /// Rebuilds a pending authorization a host kept (state and PKCE verifier).
    pub fn restore(
        url: String,
        redirect_uri: String,
        state: SecretString,
        verifier: SecretString,
    ) -> Self {
        Self {
            url,
            redirect_uri,
            state,
            verifier,
        }
    }

    /// The PKCE verifier, for a host that keeps the authorization between requests.
    pub fn verifier(&self) -> &SecretString {
        &self.verifier
    }
}

/// Google's OAuth endpoints for one client (a Desktop app client: its secret is not
/// confidential but Google expects it). `Debug` hides the secret.
#[derive(Clone)]
pub struct GoogleOAuth {
    client_id: String,
    client_secret: SecretString,
    auth_url: String,
    token_url: String,
    revoke_url: String,
    scopes: Vec<String>,
    http: reqwest::Client,
}

impl fmt::Debug for GoogleOAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleOAuth")
            .field("client_id", &self.client_id)
            .field("token_url", &jilo_core::config::redact_url(&self.token_url))
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

fn oauth_client() -> Result<reqwest::Client> {
    // The token endpoint must not be followed through redirects (the oauth2 crate's advice).
    crate::http::build_client(
        crate::http::client_builder()?
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30)),
    )
}

/// The token calls' transport: reqwest, as the `oauth2` crate's `AsyncHttpClient`.
struct TokenHttp<'a>(&'a reqwest::Client);

impl<'c> AsyncHttpClient<'c> for TokenHttp<'_> {
    type Error = HttpClientError<reqwest::Error>;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = std::result::Result<HttpResponse, Self::Error>>
                + Send
                + 'c,
        >,
    >;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request).map_err(Box::new)?;
            let response = crate::http::traced(
                "google oauth",
                1,
                reqwest::RequestBuilder::from_parts(self.0.clone(), request),
            )
            .await
            .map_err(Box::new)?;
            let mut answer = http_types::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                answer = answer.header(name, value);
            }
            let body = response.bytes().await.map_err(Box::new)?;
            answer.body(body.to_vec()).map_err(HttpClientError::Http)
        })
    }
}

fn bad_url(what: &str, e: impl fmt::Display) -> Error {
    Error::invalid(what, format!("not a URL: {e}"))
}

type TokenError = RequestTokenError<
    HttpClientError<reqwest::Error>,
    StandardErrorResponse<BasicErrorResponseType>,
>;

/// The token endpoint's refusal as jilo's error: `invalid_grant` (revoked, expired, the
/// 7-day testing-mode limit) is [`Error::ReconnectRequired`], never retried.
fn token_error(account: &str, e: TokenError) -> Error {
    match e {
        RequestTokenError::ServerResponse(r) => {
            let reason = r
                .error_description()
                .cloned()
                .unwrap_or_else(|| r.error().to_string());
            match r.error() {
                BasicErrorResponseType::InvalidGrant => Error::ReconnectRequired {
                    service: SERVICE.to_owned(),
                    account: account.to_owned(),
                    reason,
                },
                BasicErrorResponseType::InvalidClient
                | BasicErrorResponseType::UnauthorizedClient => Error::Unauthorized {
                    service: SERVICE.to_owned(),
                    response: Some(jilo_core::HttpFailure::new(
                        401,
                        &format!("{}: {reason}", r.error()),
                    )),
                    source: None,
                },
                other => Error::Protocol {
                    service: SERVICE.to_owned(),
                    reason: format!("{other}: {reason}"),
                    response: None,
                    source: None,
                },
            }
        }
        RequestTokenError::Request(HttpClientError::Reqwest(e)) => {
            crate::http::transport_error(SERVICE, crate::http::CallKind::Read, *e)
        }
        RequestTokenError::Request(other) => Error::Unavailable {
            service: SERVICE.to_owned(),
            reason: other.to_string(),
            response: None,
            source: None,
        },
        // An answer that is not the endpoint's JSON (an HTML 5xx page, a proxy's error) or
        // a success it could not read. The body may hold tokens: only its size is kept.
        RequestTokenError::Parse(e, body) => Error::Unavailable {
            service: SERVICE.to_owned(),
            reason: format!(
                "the token endpoint answered {} bytes that could not be read (at {})",
                body.len(),
                e.path()
            ),
            response: None,
            source: None,
        },
        RequestTokenError::Other(reason) => Error::Protocol {
            service: SERVICE.to_owned(),
            reason,
            response: None,
            source: None,
        },
    }
}

fn tokens_from(
    response: &StandardTokenResponse<EmptyExtraTokenFields, BasicTokenType>,
    now: Timestamp,
    asked: &[String],
) -> OAuthTokens {
    let lifetime = response.expires_in().unwrap_or(Duration::from_secs(3599));
    OAuthTokens {
        access_token: SecretString::from(response.access_token().secret().clone()),
        refresh_token: response
            .refresh_token()
            .map(|r| SecretString::from(r.secret().clone())),
        expires_at: now.plus(lifetime),
        scopes: response
            .scopes()
            .map(|s| s.iter().map(|s| s.to_string()).collect())
            .unwrap_or_else(|| asked.to_vec()),
    }
}

impl GoogleOAuth {
    /// A client with Google's endpoints and [`YOUTUBE_SCOPES`]. A client id or secret with
    /// whitespace around it or a control character is refused ([`Error::InvalidInput`] on
    /// `YOUTUBE_CLIENT_ID` / `YOUTUBE_CLIENT_SECRET`), and so is a machine whose TLS roots
    /// cannot load.
    pub fn new(client_id: impl Into<String>, client_secret: SecretString) -> Result<Self> {
        let client_id = client_id.into();
        jilo_core::config::secret("YOUTUBE_CLIENT_ID", &client_id)?;
        jilo_core::config::secret("YOUTUBE_CLIENT_SECRET", client_secret.expose_secret())?;
        Ok(Self {
            client_id,
            client_secret,
            auth_url: GOOGLE_AUTH_URL.to_owned(),
            token_url: GOOGLE_TOKEN_URL.to_owned(),
            revoke_url: GOOGLE_REVOKE_URL.to_owned(),
            scopes: YOUTUBE_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            http: oauth_client()?,
        })
    }

    /// From `YOUTUBE_CLIENT_ID` and `YOUTUBE_CLIENT_SECRET`, with `GOOGLE_OAUTH_URL`,
    /// `GOOGLE_TOKEN_URL` and `GOOGLE_REVOKE_URL` overriding the endpoints; a bad value is
    /// [`Error::InvalidInput`] naming its variable.
    pub fn from_env() -> Result<Self> {
        let id = required_env("YOUTUBE_CLIENT_ID", "set it to a Google OAuth client id")?;
        let secret = required_env(
            "YOUTUBE_CLIENT_SECRET",
            "set it to the Google OAuth client's secret",
        )?;
        let mut oauth = Self::new(id, SecretString::from(secret))?;
        for (name, url) in [
            ("GOOGLE_OAUTH_URL", &mut oauth.auth_url),
            ("GOOGLE_TOKEN_URL", &mut oauth.token_url),
            ("GOOGLE_REVOKE_URL", &mut oauth.revoke_url),
        ] {
            if let Some(value) = env_var(name) {
                *url = jilo_core::config::http_url(name, &value)?.to_string();
            }
        }
        Ok(oauth)
    }

    /// Other endpoints (a proxy, a test server), each an http(s) URL ([`Error::InvalidInput`]
    /// naming `GOOGLE_OAUTH_URL`, `GOOGLE_TOKEN_URL` or `GOOGLE_REVOKE_URL` otherwise).
    pub fn with_endpoints(
        mut self,
        auth_url: impl Into<String>,
        token_url: impl Into<String>,
        revoke_url: impl Into<String>,
    ) -> Result<Self> {
        let check = |name: &str, url: String| jilo_core::config::http_url(name, &url).map(|_| url);
        self.auth_url = check("GOOGLE_OAUTH_URL", auth_url.into())?;
        self.token_url = check("GOOGLE_TOKEN_URL", token_url.into())?;
        self.revoke_url = check("GOOGLE_REVOKE_URL", revoke_url.into())?;
        Ok(self)
    }

    /// Other scopes than [`YOUTUBE_SCOPES`].
    pub fn with_scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The HTTP client for the token calls (keep redirects off).
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.http = client;
        self
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    fn client(
        &self,
        redirect_uri: Option<&str>,
    ) -> Result<
        BasicClient<
            oauth2::EndpointSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointSet,
        >,
    > {
        let mut client = BasicClient::new(ClientId::new(self.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                self.client_secret.expose_secret().to_owned(),
            ))
            // Google's own libraries send the secret in the form body.
            .set_auth_type(AuthType::RequestBody)
            .set_auth_uri(
                AuthUrl::new(self.auth_url.clone()).map_err(|e| bad_url("GOOGLE_OAUTH_URL", e))?,
            )
            .set_token_uri(
                TokenUrl::new(self.token_url.clone())
                    .map_err(|e| bad_url("GOOGLE_TOKEN_URL", e))?,
            );
        if let Some(uri) = redirect_uri {
            client = client.set_redirect_uri(
                RedirectUrl::new(uri.to_owned()).map_err(|e| bad_url("redirect_uri", e))?,
            );
        }
        Ok(client)
    }

    /// The URL to send the user to: PKCE S256 (a 128-character verifier), a random `state`,
    /// `access_type=offline` (a refresh token) and `prompt=consent` (a refresh token again
    /// when the user reconnects), the configured scopes, and `redirect_uri` (a loopback
    /// address for desktop clients, see [`LoopbackRedirect`]).
    pub fn authorize(&self, redirect_uri: &str) -> Result<PendingAuthorization> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256_len(96);
        let client = self.client(Some(redirect_uri))?;
        let mut request = client
            .authorize_url(CsrfToken::new_random)
            .set_pkce_challenge(challenge)
            .add_extra_param("access_type", "offline")
            .add_extra_param("prompt", "consent");
        for scope in &self.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state) = request.url();
        Ok(PendingAuthorization {
            url: url.to_string(),
            redirect_uri: redirect_uri.to_owned(),
            state: SecretString::from(state.secret().clone()),
            verifier: SecretString::from(verifier.secret().clone()),
        })
    }

    /// Exchanges the redirect's `code` for tokens, after checking its `state` against the
    /// pending authorization's ([`Error::Unauthorized`] when it differs: a forged redirect).
    /// A grant without a refresh token, or without the scopes asked for, is refused.
    pub async fn exchange(
        &self,
        pending: &PendingAuthorization,
        returned_state: &str,
        code: &str,
        now: Timestamp,
    ) -> Result<OAuthTokens> {
        if returned_state != pending.state.expose_secret() {
            return Err(Error::Unauthorized {
                service: SERVICE.to_owned(),
                response: Some(jilo_core::HttpFailure::new(
                    400,
                    "the redirect's state does not match the authorization's",
                )),
                source: None,
            });
        }
        let client = self.client(Some(&pending.redirect_uri))?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(
                pending.verifier.expose_secret().to_owned(),
            ))
            .request_async(&TokenHttp(&self.http))
            .await
            .map_err(|e| token_error("(new)", e))?;
        let tokens = tokens_from(&response, now, &self.scopes);
        if tokens.refresh_token.is_none() {
            return Err(Error::Protocol {
                service: SERVICE.to_owned(),
                reason: "the grant has no refresh token (the authorization must ask for \
                         offline access with consent)"
                    .to_owned(),
                response: None,
                source: None,
            });
        }
        let missing: Vec<&String> = self
            .scopes
            .iter()
            .filter(|s| !tokens.scopes.contains(s))
            .collect();
        if !missing.is_empty() {
            return Err(Error::NotAllowed {
                reason: format!(
                    "the user did not grant {}; connect again and allow every permission",
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        Ok(tokens)
    }

    /// A new access token from the refresh token. Google usually sends no new refresh token;
    /// the old one is kept. `invalid_grant` is [`Error::ReconnectRequired`] naming `account`.
    pub async fn refresh(
        &self,
        account: &str,
        refresh_token: &SecretString,
        now: Timestamp,
    ) -> Result<OAuthTokens> {
        let client = self.client(None)?;
        let token = RefreshToken::new(refresh_token.expose_secret().to_owned());
        let response = client
            .exchange_refresh_token(&token)
            .request_async(&TokenHttp(&self.http))
            .await
            .map_err(|e| token_error(account, e))?;
        let mut tokens = tokens_from(&response, now, &self.scopes);
        if tokens.refresh_token.is_none() {
            tokens.refresh_token = Some(refresh_token.clone());
        }
        Ok(tokens)
    }

    /// Revokes a token (revoking the refresh token ends the whole grant): a form `POST` of
    /// `token` to the revocation endpoint. A token already revoked or expired (400
    /// `invalid_token`) counts as revoked.
    pub async fn revoke(&self, refresh_token: &SecretString) -> Result<()> {
        let response = self
            .http
            .post(&self.revoke_url)
            .form(&[("token", refresh_token.expose_secret())])
            .traced_send(SERVICE)
            .await
            .map_err(|e| crate::http::transport_error(SERVICE, crate::http::CallKind::Read, e))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        let error = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_default();
        match (status, error.as_str()) {
            (400, "invalid_token" | "invalid_grant") => Ok(()),
            (s, _) if s >= 500 => Err(Error::Unavailable {
                service: SERVICE.to_owned(),
                reason: format!("revoking failed: HTTP {s}"),
                response: Some(jilo_core::HttpFailure::new(s, &body)),
                source: None,
            }),
            (s, e) => Err(Error::Protocol {
                service: SERVICE.to_owned(),
                reason: format!("revoking failed: HTTP {s} {e}"),
                response: Some(jilo_core::HttpFailure::new(s, &body)),
                source: None,
            }),
        }
    }
}

/// What came back on the loopback redirect.
#[derive(Clone, PartialEq, Eq)]
pub struct RedirectParams {
    /// The authorization code.
    pub code: String,
    /// The state, to check.
    pub state: String,
}

impl fmt::Debug for RedirectParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RedirectParams(..)")
    }
}

/// A one-shot HTTP listener on `127.0.0.1` that receives the authorization redirect, for
/// command-line hosts (Google's desktop flow: any free port is accepted).
///
/// ```no_run
/// # async fn demo(oauth: jilo_providers::youtube::GoogleOAuth) -> jilo_core::Result<()> {
/// use jilo_providers::youtube::LoopbackRedirect;
/// let redirect = LoopbackRedirect::bind().await?;
/// let pending = oauth.authorize(&redirect.uri())?;
/// println!("open {}", pending.url);
/// let back = redirect.wait(std::time::Duration::from_secs(300)).await?;
/// let tokens = oauth.exchange(&pending, &back.state, &back.code, jilo_core::Timestamp::from_system(std::time::SystemTime::now())).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LoopbackRedirect {
    listener: tokio::net::TcpListener,
    port: u16,
}

fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl LoopbackRedirect {
    /// Listens on a free port of `127.0.0.1`.
    pub async fn bind() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| {
                Error::storage(
                    "opening the loopback listener",
                    false,
                    Some(Box::new(e) as _),
                )
            })?;
        let port = listener
            .local_addr()
            .map_err(|e| {
                Error::storage(
                    "opening the loopback listener",
                    false,
                    Some(Box::new(e) as _),
                )
            })?
            .port();
        Ok(Self { listener, port })
    }

    /// The redirect URI to authorize with: `http://127.0.0.1:{port}/`.
    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Waits for the browser's redirect, answers it with a short page, and returns its code
    /// and state. A denial (`?error=access_denied`) is [`Error::NotAllowed`]; no redirect in
    /// `timeout` is [`Error::Timeout`].
    pub async fn wait(self, timeout: Duration) -> Result<RedirectParams> {
        let accept = async {
            loop {
                let (mut stream, _) = self.listener.accept().await.map_err(|e| {
                    Error::storage("accepting the redirect", false, Some(Box::new(e) as _))
                })?;
                let mut buf = vec![0u8; 8192];
                let mut read = 0;
                while read < buf.len() {
                    let n = stream.read(&mut buf[read..]).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    read += n;
                    if buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let head = String::from_utf8_lossy(&buf[..read]).into_owned();
                let target = head
                    .lines()
                    .next()
                    .and_then(|l| l.split_whitespace().nth(1))
                    .unwrap_or("/");
                let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
                let code = query_param(query, "code");
                let state = query_param(query, "state");
                let error = query_param(query, "error");
                if code.is_none() && error.is_none() {
                    // A favicon or a stray request: not the redirect.
                    let _ = stream
                        .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    continue;
                }
                let page = if error.is_some() {
                    "Authorization was refused. You can close this window."
                } else {
                    "The channel is connected. You can close this window."
                };
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
                if let Some(error) = error {
                    return Err(Error::NotAllowed {
                        reason: format!("the user refused the authorization ({error})"),
                    });
                }
                return Ok(RedirectParams {
                    code: code.unwrap_or_default(),
                    state: state.unwrap_or_default(),
                });
            }
        };
        tokio::time::timeout(timeout, accept)
            .await
            .map_err(|_| Error::Timeout {
                service: SERVICE.to_owned(),
                response: None,
                source: None,
            })?
    }
}
