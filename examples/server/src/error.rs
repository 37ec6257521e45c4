//! One error type for every route, answered as `{"error": {"code", "message", "field"?}}` with
//! the message in the request's language ([`crate::i18n`]).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::i18n::{Lang, Msg};

/// What a route answers when it fails. The body is written by [`localize`], which knows the
/// request's language. Its [`Details`] are boxed, so a `Result` carrying it stays small.
#[derive(Clone, Debug)]
pub struct ApiError(Box<Details>);

impl std::ops::Deref for ApiError {
    type Target = Details;
    fn deref(&self) -> &Details {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut Details {
        &mut self.0
    }
}

/// An [`ApiError`]'s facts.
#[derive(Clone, Debug)]
pub struct Details {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable, language-free code.
    pub code: &'static str,
    /// The request field at fault, if one is.
    pub field: Option<String>,
    /// The message.
    pub msg: Msg,
    /// Seconds a client should wait (`Retry-After`).
    pub retry_after: Option<u64>,
    /// More facts for a client (e.g. `available` credits).
    pub extra: Map<String, Value>,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &'static str, msg: Msg) -> Self {
        Self(Box::new(Details {
            status,
            code,
            field: None,
            msg,
            retry_after: None,
            extra: Map::new(),
        }))
    }

    /// A field of the request is wrong (422).
    pub fn field(field: &str, msg: Msg) -> Self {
        let mut e = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", msg);
        e.field = Some(field.to_owned());
        e
    }

    /// Not found, or another user's (404).
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", Msg::NotFound)
    }

    /// No valid session (401).
    pub fn sign_in() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            Msg::SignInRequired,
        )
    }

    /// A failure of ours, logged with its cause; the user reads a generic message (500).
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", Msg::Internal)
    }

    /// The same error with a fact for the client.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// The body in `lang`.
    pub fn body(&self, lang: Lang) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), self.code.into());
        error.insert("message".into(), self.msg.render(lang).into());
        if let Some(field) = &self.field {
            error.insert("field".into(), field.clone().into());
        }
        for (k, v) in &self.extra {
            error.insert(k.clone(), v.clone());
        }
        json!({ "error": error })
    }

    /// The response in `lang`.
    pub fn respond(&self, lang: Lang) -> Response {
        let mut response = (self.status, axum::Json(self.body(lang))).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert("retry-after", v);
            }
        }
        response
    }
}

impl IntoResponse for ApiError {
    /// A placeholder carrying the error; [`localize`] writes the body in the request's language.
    fn into_response(self) -> Response {
        let mut response = self.respond(Lang::Zh);
        response.extensions_mut().insert(self);
        response
    }
}

/// The request's field name for one of the library's.
fn request_field(library_field: &str) -> &str {
    match library_field {
        "duration_secs" => "duration",
        other => other,
    }
}

impl From<jilo::Error> for ApiError {
    fn from(e: jilo::Error) -> Self {
        use jilo::Error as E;
        match e {
            E::Insufficient { available, needed } => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_credits",
                Msg::Insufficient { available, needed },
            )
            .with("available", available)
            .with("needed", needed),
            E::DailyCapReached { .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "daily_cap", Msg::DailyCap)
            }
            E::InvalidInput { field, reason } => {
                let field = request_field(&field).to_owned();
                ApiError::field(
                    &field,
                    Msg::InvalidField {
                        field: field.clone(),
                        reason,
                    },
                )
            }
            E::Moderation { terms } => {
                let mut e = ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "moderation",
                    Msg::Moderation {
                        terms: terms.clone(),
                    },
                )
                .with("terms", terms);
                e.field = Some("prompt".into());
                e
            }
            E::NotFound { .. } => ApiError::not_found(),
            E::NotAllowed { reason } | E::LostRace { reason } => ApiError::new(
                StatusCode::CONFLICT,
                "not_allowed",
                Msg::NotAllowed { reason },
            ),
            E::RateLimited { retry_after, .. } => {
                let mut e = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    Msg::RateLimited,
                );
                e.retry_after = retry_after.map(|d| d.as_secs().max(1));
                e
            }
            E::ProviderOutOfFunds { .. }
            | E::Unavailable { .. }
            | E::Timeout { .. }
            | E::OutcomeUnknown { .. }
            | E::Unauthorized { .. } => {
                tracing::warn!(error = %e, "a service could not serve the request");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    Msg::ServiceUnavailable,
                )
            }
            E::QuotaExceeded { retry_at, .. } => {
                let reset = retry_at.map(crate::rfc3339);
                let mut e = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "quota_exceeded",
                    Msg::YouTubeQuota {
                        reset: reset.clone(),
                    },
                );
                if let Some(r) = reset {
                    e = e.with("resets_at", r);
                }
                e
            }
            E::ReconnectRequired { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "reconnect_required",
                Msg::ReconnectRequired,
            ),
            other => ApiError::internal(other),
        }
    }
}

/// Writes every error body in the request's language, and gives the layers' own refusals
/// (a body over the limit, a timed-out request) the same shape.
pub async fn localize(request: Request, next: Next) -> Response {
    let lang = Lang::from_headers(request.headers());
    let response = next.run(request).await;
    if let Some(error) = response.extensions().get::<ApiError>() {
        let mut localized = error.respond(lang);
        copy_extra_headers(response.headers(), localized.headers_mut());
        return localized;
    }
    match response.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            Msg::PayloadTooLarge,
        )
        .respond(lang),
        StatusCode::REQUEST_TIMEOUT => {
            ApiError::new(StatusCode::REQUEST_TIMEOUT, "timeout", Msg::Timeout).respond(lang)
        }
        _ => response,
    }
}

/// Headers a route set beside its error (cookies cleared, a request id) survive localizing.
fn copy_extra_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            to.entry(name).or_insert_with(|| value.clone());
        }
    }
}

/// `axum::Json` whose refusals are [`ApiError`]s naming the field where serde names one.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => {
                let reason = rejection.body_text();
                let status = match rejection {
                    JsonRejection::JsonDataError(_) => StatusCode::UNPROCESSABLE_ENTITY,
                    JsonRejection::BytesRejection(_) => StatusCode::PAYLOAD_TOO_LARGE,
                    _ => StatusCode::BAD_REQUEST,
                };
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    return Err(ApiError::new(
                        status,
                        "payload_too_large",
                        Msg::PayloadTooLarge,
                    ));
                }
                let mut e = ApiError::new(
                    status,
                    "invalid_body",
                    Msg::BadBody {
                        reason: reason.clone(),
                    },
                );
                e.field = serde_field(&reason);
                Err(e)
            }
        }
    }
}

/// The field serde's message names: "missing field `prompt`", "…: prompt: invalid type …".
fn serde_field(reason: &str) -> Option<String> {
    if let Some(rest) = reason.split("missing field `").nth(1) {
        return rest.split('`').next().map(str::to_owned);
    }
    // "Failed to deserialize the JSON body into the target type: duration: invalid type…"
    let after = reason.split("target type: ").nth(1)?;
    let (path, _) = after.split_once(": ")?;
    (!path.contains(' ')).then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_name_their_field() {
        assert_eq!(
            serde_field("Failed to deserialize the JSON body into the target type: missing field `prompt` at line 1 column 2").as_deref(),
            Some("prompt")
        );
        assert_eq!(
            serde_field("Failed to deserialize the JSON body into the target type: duration: invalid type: string \"x\", expected u32 at line 1 column 20").as_deref(),
            Some("duration")
        );
        assert_eq!(serde_field("EOF while parsing"), None);
    }

    #[test]
    fn library_errors_keep_their_facts() {
        let e = ApiError::from(jilo::Error::Insufficient {
            available: 3,
            needed: 15,
        });
        assert_eq!(e.status, StatusCode::PAYMENT_REQUIRED);
        let body = e.body(Lang::En);
        assert_eq!(body["error"]["code"], "insufficient_credits");
        assert_eq!(body["error"]["available"], 3);
        let e = ApiError::from(jilo::Error::invalid("duration_secs", "no"));
        assert_eq!(e.field.as_deref(), Some("duration"));
    }
}
