//! Accounts (the seed's flow 1): sign-up with the seed's rules, login slowed after repeated
//! failures, logout, and the session every user route takes its user from.

use axum::extract::{FromRequestParts, State};
use axum::http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jilo::{Grant, QuotaStore, UserId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::accounts::{hash_password, is_unique_violation, verify_password, Account};
use crate::error::{ApiError, ApiJson};
use crate::i18n::Msg;
use crate::AppState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "jilo_session";

/// The user of the request's session (`Authorization: Bearer` or the session cookie).
#[derive(Clone, Debug)]
pub struct CurrentUser(pub UserId);

/// The request's session token, if it carries one.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    if let Some(bearer) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(bearer.trim().to_owned());
    }
    cookie_value(headers, SESSION_COOKIE)
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = session_token(&parts.headers).ok_or_else(ApiError::sign_in)?;
        match state.accounts().session_user(&token, state.now()).await {
            Ok(Some(user)) => Ok(CurrentUser(user)),
            Ok(None) => Err(ApiError::sign_in()),
            Err(e) => Err(ApiError::internal(e)),
        }
    }
}

/// `POST /api/auth/signup`'s body.
#[derive(Debug, Deserialize)]
pub struct Signup {
    /// The email.
    pub email: String,
    /// The password.
    pub password: String,
    /// The password again.
    pub confirm: String,
}

/// `POST /api/auth/login`'s body.
#[derive(Debug, Deserialize)]
pub struct Login {
    /// The email.
    pub email: String,
    /// The password.
    pub password: String,
}

/// What sign-up and login answer.
#[derive(Debug, Serialize)]
pub struct SessionAnswer {
    /// The session token, for `Authorization: Bearer` (the cookie carries it too).
    pub token: String,
    /// The user.
    pub user: UserView,
}

/// A user as the API shows them.
#[derive(Debug, Serialize)]
pub struct UserView {
    /// The id.
    pub id: String,
    /// The email.
    pub email: String,
}

impl From<&Account> for UserView {
    fn from(a: &Account) -> Self {
        Self {
            id: a.id.to_string(),
            email: a.email.clone(),
        }
    }
}

/// The email's canonical form, if it is an address: one `@`, a local part, a dotted domain,
/// no spaces, at most 254 characters.
pub fn check_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            }
            None => false,
        };
    if valid {
        Ok(email)
    } else {
        Err(ApiError::field("email", Msg::EmailInvalid))
    }
}

/// The seed's password rule: at least 8 characters, letters and digits.
pub fn check_password(password: &str) -> Result<(), ApiError> {
    let ok = password.chars().count() >= 8
        && password.len() <= 1024
        && password.chars().any(|c| c.is_alphabetic())
        && password.chars().any(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ApiError::field("password", Msg::PasswordWeak))
    }
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, `Secure` when the server is reached over
/// HTTPS; an empty value with `max_age` 0 clears the cookie.
fn cookie(
    state: &AppState,
    name: &str,
    value: &str,
    path: &str,
    max_age: u64,
) -> Option<HeaderValue> {
    let secure = if state.config().public_url().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly; SameSite=Lax; Path={path}; Max-Age={max_age}{secure}"
    ))
    .ok()
}

fn session_cookie(state: &AppState, token: &str) -> Option<HeaderValue> {
    cookie(
        state,
        SESSION_COOKIE,
        token,
        "/",
        state.config().session_ttl.as_secs(),
    )
}

/// Grants the starting credits (idempotent: `signup:<user>`), opens a session, and answers it.
pub async fn open_session(
    state: &AppState,
    account: &Account,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let token = start_session(state, account).await?;
    let mut response = (
        status,
        Json(SessionAnswer {
            token: token.clone(),
            user: account.into(),
        }),
    )
        .into_response();
    if let Some(cookie) = session_cookie(state, &token) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    Ok(response)
}

/// Grants the starting credits (idempotent) and opens a session; answers its token.
async fn start_session(state: &AppState, account: &Account) -> Result<String, ApiError> {
    let now = state.now();
    state
        .store
        .grant(&Grant::signup(
            account.id.clone(),
            state.config().signup_credits,
            now,
        ))
        .await?;
    state
        .accounts()
        .open_session(&account.id, now, state.config().session_ttl)
        .await
        .map_err(ApiError::internal)
}

const SIGNIN_OWNER: &str = "oauth-signin";

/// The cookie tying a Google sign-in's callback to the browser that started it.
pub const SIGNIN_COOKIE: &str = "jilo_oauth";

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('='))
                .map(str::to_owned)
        })
}

/// `GET /api/auth/google`: sends the browser to Google's consent (PKCE; the verifier waits
/// sealed in the database for the callback).
pub async fn google(State(state): State<AppState>) -> Result<Response, ApiError> {
    let redirect = format!("{}/api/auth/google/callback", state.config().public_url());
    let pending = state.signin.oauth.authorize(&redirect)?;
    let sealed = state.cipher.seal(pending.verifier(), SIGNIN_OWNER)?;
    // Only this browser may finish the sign-in (no login CSRF): it holds the nonce.
    let (nonce, nonce_hash) = crate::accounts::new_token();
    state
        .accounts()
        .keep_oauth(
            pending.state(),
            &crate::accounts::PendingOAuth {
                purpose: "signin".into(),
                user: None,
                url: pending.url.clone(),
                redirect_uri: pending.redirect_uri.clone(),
                verifier: sealed.to_string(),
                binding: Some(nonce_hash),
            },
            state.now(),
        )
        .await
        .map_err(ApiError::internal)?;
    let mut response = axum::response::Redirect::to(&pending.url).into_response();
    if let Some(v) = cookie(&state, SIGNIN_COOKIE, &nonce, "/api/auth/google", 600) {
        response.headers_mut().insert(SET_COOKIE, v);
    }
    Ok(response)
}

/// What the userinfo endpoint says of the account.
#[derive(Debug, Deserialize)]
struct UserInfo {
    sub: String,
    email: Option<String>,
    #[serde(default)]
    email_verified: bool,
}

/// An OAuth callback's query (Google sign-in here, YouTube's connection in `publish`).
#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    /// The state sent.
    pub state: Option<String>,
    /// The code.
    pub code: Option<String>,
    /// Google's refusal (`access_denied`).
    pub error: Option<String>,
}

/// `GET /api/auth/google/callback`: the account Google signed in (found by its subject, or
/// by its verified email, else opened with the starting credits), a session cookie, and back
/// to the page. The state is taken once.
pub async fn google_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<CallbackQuery>,
) -> Result<Response, ApiError> {
    use secrecy::ExposeSecret;
    let failed = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "google_signin",
            Msg::GoogleSignInFailed,
        )
    };
    let (Some(returned), Some(code)) = (q.state.as_deref(), q.code.as_deref()) else {
        return Ok(axum::response::Redirect::to("/?signin=declined").into_response());
    };
    let kept = state
        .accounts()
        .take_oauth(returned, state.now())
        .await
        .map_err(ApiError::internal)?
        .filter(|p| p.purpose == "signin")
        .ok_or_else(failed)?;
    let nonce = cookie_value(&headers, SIGNIN_COOKIE).map(|n| crate::accounts::token_hash(&n));
    if nonce.is_none() || nonce != kept.binding {
        tracing::warn!("a Google sign-in callback came without the browser that started it");
        return Err(failed());
    }
    let sealed: jilo::providers::tokens::SealedToken = kept.verifier.parse()?;
    let verifier = state.cipher.open(&sealed, SIGNIN_OWNER)?;
    let pending = jilo::providers::youtube::PendingAuthorization::restore(
        kept.url,
        kept.redirect_uri,
        secrecy::SecretString::from(returned.to_owned()),
        verifier,
    );
    let tokens = state
        .signin
        .oauth
        .exchange(&pending, returned, code, state.now())
        .await?;
    let answer = state
        .http
        .get(&state.signin.userinfo_url)
        .bearer_auth(tokens.access_token.expose_secret())
        .send()
        .await
        .map_err(|e| ApiError::internal(format!("google userinfo: {}", e.without_url())))?;
    if !answer.status().is_success() {
        tracing::warn!(status = %answer.status(), "google userinfo refused the fresh token");
        return Err(failed());
    }
    let info: UserInfo = answer
        .json()
        .await
        .map_err(|e| ApiError::internal(format!("google userinfo: {}", e.without_url())))?;
    // The refresh token is dropped, not revoked: revoking would end the user's whole grant
    // to this client, YouTube channel included.
    drop(tokens);
    let email = match info.email {
        Some(e) if info.email_verified => check_email(&e)?,
        _ => return Err(failed()),
    };
    use crate::accounts::GoogleAccount;
    let account = match state
        .accounts()
        .google_account(&info.sub, &email, state.now())
        .await
        .map_err(ApiError::internal)?
    {
        GoogleAccount::Found(a) => a,
        GoogleAccount::Opened(a) => {
            tracing::info!(user = %a.id, "account opened with Google");
            a
        }
        GoogleAccount::PasswordAccount => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "password_account",
                Msg::PasswordAccount,
            ))
        }
        GoogleAccount::OtherGoogleAccount => return Err(failed()),
    };
    let token = start_session(&state, &account).await?;
    let mut response = axum::response::Redirect::to("/").into_response();
    if let Some(cookie) = session_cookie(&state, &token) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    if let Some(v) = cookie(&state, SIGNIN_COOKIE, "", "/api/auth/google", 0) {
        response.headers_mut().append(SET_COOKIE, v);
    }
    Ok(response)
}

/// `POST /api/auth/signup`: a new account with its starting credits, signed in.
pub async fn signup(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Signup>,
) -> Result<Response, ApiError> {
    let email = check_email(&body.email)?;
    check_password(&body.password)?;
    if body.confirm != body.password {
        return Err(ApiError::field("confirm", Msg::PasswordMismatch));
    }
    if state
        .accounts()
        .by_email(&email)
        .await
        .map_err(ApiError::internal)?
        .is_some()
    {
        return Err(email_taken());
    }
    let hash = hash_password(body.password)
        .await
        .map_err(ApiError::internal)?;
    let account = match state
        .accounts()
        .create_user(&email, Some(&hash), None, state.now())
        .await
    {
        Ok(a) => a,
        Err(e) if is_unique_violation(&e) => return Err(email_taken()),
        Err(e) => return Err(ApiError::internal(e)),
    };
    tracing::info!(user = %account.id, "account opened");
    open_session(&state, &account, StatusCode::CREATED).await
}

fn email_taken() -> ApiError {
    let mut e = ApiError::new(StatusCode::CONFLICT, "email_taken", Msg::EmailTaken);
    e.field = Some("email".into());
    e
}

/// `POST /api/auth/login`.
pub async fn login(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Login>,
) -> Result<Response, ApiError> {
    let email = body.email.trim().to_lowercase();
    let accounts = state.accounts();
    if let Some(wait) = accounts
        .reserve_login(&email, state.now())
        .await
        .map_err(ApiError::internal)?
    {
        let secs = wait.as_secs().max(1);
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            Msg::TooManyAttempts { secs },
        );
        e.retry_after = Some(secs);
        return Err(e);
    }
    let account = accounts
        .by_email(&email)
        .await
        .map_err(ApiError::internal)?;
    let hash = account.as_ref().and_then(|a| a.password_hash.clone());
    // The attempt was counted as a failure when reserved; a good one forgets the count.
    if !verify_password(body.password, hash).await {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            Msg::BadCredentials,
        ));
    }
    let Some(account) = account else {
        return Err(ApiError::internal("a verified login without its account"));
    };
    accounts
        .login_succeeded(&email)
        .await
        .map_err(ApiError::internal)?;
    open_session(&state, &account, StatusCode::OK).await
}

/// `POST /api/auth/logout`: ends the request's session and clears the cookie.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = session_token(&headers) {
        state
            .accounts()
            .close_session(&token)
            .await
            .map_err(ApiError::internal)?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(v) = cookie(&state, SESSION_COOKIE, "", "/", 0) {
        response.headers_mut().insert(SET_COOKIE, v);
    }
    Ok(response)
}

/// `GET /api/me`.
pub async fn me(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<serde_json::Value>, ApiError> {
    let account = state
        .accounts()
        .by_id(&user)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(ApiError::sign_in)?;
    Ok(Json(json!({ "user": UserView::from(&account) })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_rules() {
        assert_eq!(
            check_email(" Ann@Example.COM ").ok().as_deref(),
            Some("ann@example.com")
        );
        for bad in [
            "ann",
            "ann@",
            "@x.com",
            "a@b",
            "a b@x.com",
            "a@x..com",
            "a@@x.com",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
        assert!(check_password("abcdefg1").is_ok());
        for bad in ["abc1", "abcdefgh", "12345678"] {
            assert!(check_password(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_token_comes_from_bearer_or_cookie() {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_static("a=1; jilo_session=tok; b=2"),
        );
        assert_eq!(session_token(&h).as_deref(), Some("tok"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer other"));
        assert_eq!(session_token(&h).as_deref(), Some("other"));
    }
}
