//! Request bodies: read up to the configured limit, then parsed into typed requests with
//! errors a caller can act on.
//!
//! actix's own `Json` extractor answers in plain text and its own words; reading the bytes
//! ourselves keeps every refusal in the API's error format and lets the webhook verify the
//! exact bytes it received.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::{Bytes, BytesMut, Data};
use actix_web::{FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use futures::StreamExt;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::error_code::ErrorCode;
use super::state::AppState;

/// The raw body, at most `MAX_BODY_BYTES` long.
pub struct Body(pub Bytes);

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::BodyTooLarge,
        format!("the request body is larger than {limit} bytes"),
    )
}

impl FromRequest for Body {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Body, ApiError>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = request
            .app_data::<Data<AppState>>()
            .map_or(64 * 1024, |state| state.limits.max_body_bytes);
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            // Refuse a declared oversize body before reading any of it.
            if declared.is_some_and(|length| length > limit as u64) {
                return Err(too_large(limit));
            }
            let mut body = BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|error| {
                    ApiError::new(
                        ErrorCode::UnreadableBody,
                        format!("cannot read the body: {error}"),
                    )
                })?;
                if body.len() + chunk.len() > limit {
                    return Err(too_large(limit));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Body(body.freeze()))
        })
    }
}

impl Body {
    /// Parses the body as JSON into `T`: syntax errors are `malformed_json` (400), a wrong
    /// shape or type is `invalid_request` (422).
    /// Like [`Body::json`], but an empty body means `T::default()` (for requests whose
    /// fields are all optional).
    pub fn json_or_default<T: DeserializeOwned + Default>(&self) -> Result<T, ApiError> {
        if self.0.is_empty() {
            return Ok(T::default());
        }
        self.json()
    }

    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if self.0.is_empty() {
            return Err(ApiError::new(
                ErrorCode::MalformedJson,
                "the request needs a JSON body",
            ));
        }
        serde_json::from_slice(&self.0).map_err(json_error)
    }
}

/// What a body that did not parse gets: a syntax error is `malformed_json` (400), a wrong
/// shape or type `invalid_request` (422).
pub fn json_error(error: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match error.classify() {
        Category::Data => ApiError::new(ErrorCode::InvalidRequest, error.to_string()),
        Category::Syntax | Category::Eof | Category::Io => ApiError::new(
            ErrorCode::MalformedJson,
            format!("the body is not valid JSON: {error}"),
        ),
    }
}
