//! `POST /webhooks/telegram`: Telegram delivers bot updates here in webhook mode.
//!
//! The request must carry our secret in `X-Telegram-Bot-Api-Secret-Token` (checked in
//! constant time); without it, or with another, the answer is 401 and nothing reaches the
//! bot. A good update is queued for the dispatcher and acknowledged at once; the bot's own
//! commands are idempotent on the update id, so Telegram's redelivery after a lost answer
//! changes nothing. When the bot is off or polls instead, the route answers 404.

use actix_web::{post, web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::body::{json_error, Body};
use super::error::ApiError;
use super::error_code::ErrorCode;
use starledger_shop::inbox::{InboxError, UpdateInbox};

/// The header Telegram puts the `secret_token` of `setWebhook` in.
pub const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

pub fn routes(config: &mut ServiceConfig) {
    config.service(telegram);
}

/// A Telegram Bot API `Update` object (https://core.telegram.org/bots/api#update); the bot
/// uses `message` and `callback_query`. The bot parses it; this type only describes it.
#[derive(ToSchema)]
#[allow(dead_code)]
struct TelegramUpdate {
    #[schema(minimum = 0)]
    update_id: i64,
    message: Option<serde_json::Map<String, serde_json::Value>>,
    callback_query: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The update is queued for the bot.
#[derive(Serialize, ToSchema)]
struct Queued {
    /// Always `true`.
    ok: bool,
}

fn count(outcome: &'static str) {
    metrics::counter!("starledger_webhooks_total", "provider" => "telegram", "outcome" => outcome)
        .increment(1);
}

/// Telegram's bot webhook
///
/// Where Telegram delivers bot updates in webhook mode (`TELEGRAM_WEBHOOK_URL` or
/// `PRODUCTION_DOMAIN` set); 404 when the bot is off or polls. Needs the secret of `setWebhook` in
/// `X-Telegram-Bot-Api-Secret-Token` (else 401 `invalid_secret_token`), not an API key.
#[utoipa::path(
    operation_id = "telegramWebhook",
    tag = "telegram",
    params(("X-Telegram-Bot-Api-Secret-Token" = String, Header,
        description = "The `secret_token` the service gave `setWebhook` (`WEBHOOK_SECRET`).")),
    request_body = TelegramUpdate,
    responses((status = 200, description = "Queued for the bot.", body = Queued)),
)]
#[post("/webhooks/telegram")]
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
    Ok(HttpResponse::Ok().json(Queued { ok: true }))
}
