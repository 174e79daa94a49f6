//! The Telegram bot (teloxide), run inside `starledger serve` when `TELEGRAM_TOKEN` is set.
//!
//! - [`command`]: slash commands parsed into the ledger's types.
//! - [`flows`]: what each message and button press does; `orders`: the Stars order flow.
//! - [`replies`]: how replies reach the user, waiting out Telegram's flood control.
//! - [`keyboards`]: inline keyboards and the button data they carry back.
//! - [`texts`]: every word, in Russian and English.
//! - [`limits`]: per-user rate limits (Redis, or in process).
//! - [`session`]: dialogue state between messages (Redis with a TTL, or in process).
//! - [`notifications`]: status messages from the event log, a checkpointed reactor.
//! - [`webhook`]: webhook mode's dispatcher listener over the inbox (`crate::inbox`).
//! - [`state`]: what the bot reads and commands through (the shop core, the read store).
//! - [`delivery`]: what a failed Bot API call means; logging without the token.
//! - [`redis_link`]: the Redis connection the limits and sessions share.
//!
//! Updates arrive by long polling (default; exactly one instance may poll) or by webhook
//! (`PRODUCTION_DOMAIN` or `TELEGRAM_WEBHOOK_URL`): then `setWebhook` is called at start with
//! the secret token, and `POST /webhooks/telegram` feeds the dispatcher. Either way the bot
//! issues ledger commands through `starledger_shop` and reads the projections; it owns no data.
//!
//! May depend on: the shop core (`starledger-shop`), the projections, the ledger,
//! `starledger-settings` and `starledger-telemetry`; never on `starledger-http` (webhook
//! updates come in through the shop core's `UpdateInbox`, implemented in [`inbox`]).

pub mod command;
pub mod delivery;
pub mod flows;
pub mod inbox;
pub mod keyboards;
pub mod limits;
pub mod notifications;
mod orders;
pub mod redis_link;
pub mod replies;
pub mod session;
pub mod settings;
pub mod state;
pub mod texts;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use teloxide::dispatching::{Dispatcher, UpdateFilterExt};
use teloxide::dptree;
use teloxide::payloads::SetWebhookSetters;
use teloxide::prelude::Requester;
use teloxide::types::{AllowedUpdate, Update};
use teloxide::update_listeners::Polling;
use teloxide::{Bot, RequestError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::delivery::Failure;
use self::limits::RateLimiter;
use self::redis_link::RedisLink;
use self::session::Sessions;
use self::state::BotState;
use crate::inbox::WebhookInbox;
use crate::settings::{TelegramConfig, TelegramMode};
use starledger_projections::cache::CacheSettings;
use starledger_projections::reactor::{self, ReactorContext};
use starledger_settings::Secret;

/// Seconds a `getUpdates` call waits for updates (Telegram holds the request that long).
const POLL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for the dispatcher to finish what it is doing (a poll in flight
/// ends within the poll timeout).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);
/// Longest pause between attempts to reach Telegram at start.
const MAX_START_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error("TELEGRAM_API_URL is not a URL")]
    ApiUrl,
    #[error("REDIS_URL does not parse ({0:?})")]
    RedisUrl(redis::ErrorKind),
    #[error("TELEGRAM_WEBHOOK_URL does not parse")]
    WebhookUrl,
    #[error("Telegram refused setWebhook for {url}: {why} (check TELEGRAM_WEBHOOK_URL / PRODUCTION_DOMAIN and WEBHOOK_SECRET)")]
    WebhookRefused { url: String, why: String },
    #[error("setWebhook for {url} failed {attempts} times, the last: {why}")]
    WebhookUnreachable {
        url: String,
        attempts: u32,
        why: String,
    },
}

/// The updates the bot asks Telegram for, by webhook or by polling.
const ALLOWED_UPDATES: [AllowedUpdate; 2] = [AllowedUpdate::Message, AllowedUpdate::CallbackQuery];

/// Attempts `setWebhook` gets at start-up before the server gives up. (teloxide itself
/// waits 10 s after a 5xx before answering, so three attempts at a failing Telegram take
/// about 20 s.)
const WEBHOOK_ATTEMPTS: u32 = 3;

/// Registers the webhook before the server starts: without it Telegram sends the bot
/// nothing, and an operator would only notice when users do. A refusal (Telegram will not take
/// this URL or secret) stops start-up at once; other failures are tried a few times with
/// growing pauses first.
async fn register_webhook(
    bot: &Bot,
    url: &str,
    secret: &Secret,
    token: &Secret,
) -> Result<(), BotError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| BotError::WebhookUrl)?;
    let mut pause = Duration::from_millis(250);
    for attempt in 1..=WEBHOOK_ATTEMPTS {
        let request = bot
            .set_webhook(parsed.clone())
            .secret_token(secret.expose().to_owned())
            .allowed_updates(ALLOWED_UPDATES.to_vec());
        let error = match request.await {
            Ok(_) => {
                tracing::info!(url, "Telegram webhook registered");
                return Ok(());
            }
            Err(error) => error,
        };
        let why = delivery::describe(&error, token);
        match delivery::classify(&error) {
            Failure::Rejected | Failure::Unreachable => {
                return Err(BotError::WebhookRefused {
                    url: url.to_owned(),
                    why,
                })
            }
            Failure::RetryAfter(wait) => pause = wait.min(MAX_START_BACKOFF),
            Failure::Transient => {}
        }
        if attempt == WEBHOOK_ATTEMPTS {
            return Err(BotError::WebhookUnreachable {
                url: url.to_owned(),
                attempts: attempt,
                why,
            });
        }
        tracing::warn!(%why, attempt, "Telegram: setWebhook failed; trying again");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_START_BACKOFF);
    }
    Ok(())
}

/// What every handler shares.
pub struct BotContext {
    pub state: Arc<BotState>,
    pub limits: RateLimiter,
    pub sessions: Sessions,
    /// The bot's own Telegram id (from `getMe`): part of every idempotency key.
    pub bot_id: u64,
    /// For `/command@bot_username` in groups and clients that add it.
    pub bot_username: String,
}

/// The running bot: the webhook inbox (webhook mode) and the tasks to await at shutdown.
/// Empty when the bot is off.
#[derive(Default)]
pub struct RunningBot {
    pub inbox: Option<WebhookInbox>,
    pub tasks: Vec<JoinHandle<()>>,
}

/// Starts the bot when it is configured: in webhook mode `setWebhook` first (bounded: a
/// refusal stops start-up), then the dispatcher (after `getMe`, and in polling mode
/// `deleteWebhook`, retried until Telegram answers) and the notifications reactor. Without a
/// configuration it says so in one log line and starts nothing.
pub async fn start(
    cache: &CacheSettings,
    telegram: Option<&TelegramConfig>,
    state: Arc<BotState>,
    reactors: ReactorContext,
    stop: watch::Receiver<bool>,
) -> Result<RunningBot, BotError> {
    let Some(telegram) = telegram else {
        tracing::info!("TELEGRAM_TOKEN is not set: the Telegram bot is off");
        return Ok(RunningBot::default());
    };
    let api_url =
        reqwest::Url::parse(&format!("{}/", telegram.api_url)).map_err(|_| BotError::ApiUrl)?;
    let bot = Bot::new(telegram.token.expose()).set_api_url(api_url);
    if let TelegramMode::Webhook { url, secret } = &telegram.mode {
        register_webhook(&bot, url, secret, &telegram.token).await?;
    }
    // Limits and sessions share the read cache's Redis and key prefix (under `:bot:`).
    let redis = cache
        .redis_spec()
        .map(|spec| RedisLink::new(&spec, &cache.key_prefix).map(Arc::new))
        .transpose()
        .map_err(BotError::RedisUrl)?;
    let limits = RateLimiter::new(telegram.limits, redis.clone());
    let sessions = Sessions::new(telegram.session_ttl, redis);
    let (inbox, receiver) = match &telegram.mode {
        TelegramMode::Polling => (None, None),
        TelegramMode::Webhook { secret, .. } => {
            let (inbox, receiver) = WebhookInbox::new(secret.clone());
            (Some(inbox), Some(receiver))
        }
    };
    let notifier = notifications::Notifier::new(
        bot.clone(),
        telegram.token.clone(),
        state.clone(),
        stop.clone(),
    );
    let notifications = reactor::start(notifier, reactors, stop.clone());
    let dispatcher = tokio::spawn(run(
        bot,
        telegram.clone(),
        state,
        limits,
        sessions,
        receiver,
        stop,
    ));
    tracing::info!(
        mode = match telegram.mode {
            TelegramMode::Polling => "long polling",
            TelegramMode::Webhook { .. } => "webhook",
        },
        "Telegram bot starting"
    );
    Ok(RunningBot {
        inbox,
        tasks: vec![notifications, dispatcher],
    })
}

/// Repeats `call` with growing pauses until it succeeds or `stop` turns true.
async fn persist<T, F, Fut>(
    what: &str,
    token: &Secret,
    stop: &mut watch::Receiver<bool>,
    mut call: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RequestError>>,
{
    let mut pause = Duration::from_millis(500);
    while !*stop.borrow() {
        match call().await {
            Ok(value) => return Some(value),
            Err(error) => {
                let wait = match delivery::classify(&error) {
                    Failure::RetryAfter(wait) => wait,
                    _ => pause,
                };
                tracing::warn!(
                    error = %delivery::describe(&error, token),
                    retry_in_ms = wait.as_millis() as u64,
                    "Telegram: {what} failed"
                );
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {}
                }
                pause = (pause * 2).min(MAX_START_BACKOFF);
            }
        }
    }
    None
}

#[allow(clippy::too_many_arguments)]
async fn run(
    bot: Bot,
    config: TelegramConfig,
    state: Arc<BotState>,
    limits: RateLimiter,
    sessions: Sessions,
    inbox: Option<tokio::sync::mpsc::Receiver<Update>>,
    mut stop: watch::Receiver<bool>,
) {
    let token = config.token.clone();
    let Some(me) = persist("getMe", &token, &mut stop, || {
        let bot = bot.clone();
        async move { bot.get_me().await }
    })
    .await
    else {
        return;
    };
    match &config.mode {
        // Registered by `start` before the server took requests.
        TelegramMode::Webhook { .. } => {}
        TelegramMode::Polling => {
            // A webhook left from webhook mode would make getUpdates fail.
            let deleted = persist("deleteWebhook", &token, &mut stop, || {
                let bot = bot.clone();
                async move { bot.delete_webhook().await }
            })
            .await;
            if deleted.is_none() {
                return;
            }
        }
    }
    let context = Arc::new(BotContext {
        state,
        limits,
        sessions,
        bot_id: me.user.id.0,
        // Every bot has a username; an answer without one only loses `/cmd@name` matching.
        bot_username: me.user.username.clone().unwrap_or_default(),
    });
    let handler = dptree::entry()
        .branch(Update::filter_message().endpoint(flows::on_message))
        .branch(Update::filter_callback_query().endpoint(flows::on_callback));
    let error_token = token.clone();
    // Handlers reply through the throttle; getUpdates, getMe and deleteWebhook above do not
    // need it.
    let mut dispatcher = Dispatcher::builder(replies::reply_bot(bot.clone()), handler)
        .dependencies(dptree::deps![context])
        .default_handler(|_| async {})
        .error_handler(Arc::new(move |error: RequestError| {
            let described = delivery::describe(&error, &error_token);
            async move {
                tracing::warn!(error = %described, "bot: a reply could not be sent");
            }
        }))
        .build();
    let shutdown = dispatcher.shutdown_token();
    let listener_token = token.clone();
    let listener_errors = Arc::new(move |error: RequestError| {
        let described = delivery::describe(&error, &listener_token);
        async move {
            tracing::warn!(error = %described, "bot: getUpdates failed; retrying");
        }
    });
    let mut task = match inbox {
        // The inbox cannot fail; `listener_errors` is for getUpdates.
        Some(receiver) => tokio::spawn(async move {
            dispatcher
                .dispatch_with_listener(
                    webhook::listener(receiver),
                    Arc::new(|never: std::convert::Infallible| async move { match never {} }),
                )
                .await;
        }),
        None => {
            let polling = Polling::builder(bot)
                .timeout(POLL_TIMEOUT)
                .allowed_updates(ALLOWED_UPDATES.to_vec())
                .build();
            tokio::spawn(async move {
                dispatcher
                    .dispatch_with_listener(polling, listener_errors)
                    .await;
            })
        }
    };
    tracing::info!(
        bot = me.user.username.as_deref().unwrap_or("?"),
        "Telegram bot running"
    );
    tokio::select! {
        _ = &mut task => {
            tracing::warn!("the Telegram dispatcher ended by itself");
            return;
        }
        _ = stop.changed() => {}
    }
    match shutdown.shutdown() {
        Ok(done) => {
            if tokio::time::timeout(SHUTDOWN_GRACE, done).await.is_err() {
                tracing::warn!("the Telegram dispatcher did not stop in time; abandoning it");
                task.abort();
            }
        }
        Err(_) => task.abort(),
    }
    let _ = task.await;
    tracing::info!("Telegram bot stopped");
}
