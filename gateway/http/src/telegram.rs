//! `POST /webhooks/telegram`: Telegram delivers bot updates here in webhook mode.
//!
//! The request must carry our secret in `X-Telegram-Bot-Api-Secret-Token` (checked in
//! constant time); without it, or with another, the answer is 401 and nothing reaches the
//! bot. A good update is queued for the dispatcher and acknowledged at once; the bot's own
//! commands are idempotent on the update id, so Telegram's redelivery after a lost answer
//! changes nothing. When the bot is off or polls instead, the route answers 404.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::body::{json_error, Body};
use super::error::ApiError;
use super::error_code::ErrorCode;
use starledger_shop::inbox::{InboxError, UpdateInbox};

/// The header Telegram puts the `secret_token` of `setWebhook` in.
pub const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

pub fn routes(config: &mut web::ServiceConfig) {
    config.route("/webhooks/telegram", web::post().to(telegram));
}

fn count(outcome: &'static str) {
    metrics::counter!("starledger_webhooks_total", "provider" => "telegram", "outcome" => outcome)
        .increment(1);
}

async fn telegram(
    inbox: Option<web::Data<dyn UpdateInbox>>,
    request: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let Some(inbox) = inbox else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "this instance does not take Telegram webhooks",
        ));
    };
    let secret = request
        .headers()
        .get(SECRET_HEADER)
        .map(|value| value.as_bytes());
    if !inbox.authorized(secret) {
        count("refused");
        tracing::warn!("Telegram webhook without the right secret token; refused");
        return Err(ApiError::new(
            ErrorCode::InvalidSecretToken,
            "the secret token is missing or wrong",
        ));
    }
    if body.0.is_empty() {
        return Err(ApiError::new(
            ErrorCode::MalformedJson,
            "the request needs a JSON body",
        ));
    }
    inbox.deliver(&body.0).map_err(|error| match error {
        InboxError::Malformed(error) => json_error(error),
        InboxError::Unavailable => {
            count("failed");
            ApiError::unavailable("the bot cannot take updates now", &error)
        }
    })?;
    count("queued");
    Ok(HttpResponse::Ok().json(json!({"ok": true})))
}
