//! How the bot's replies reach a user: new messages through teloxide's `Throttle`, edits
//! with Telegram's flood control waited out here, so a 429 `retry_after` delays a reply
//! instead of losing it.
//!
//! `Throttle` queues every `sendMessage` to stay under the limits below and, when Telegram
//! still answers 429, holds the whole queue for the `retry_after` Telegram names and sends
//! the same request again. Its queue is looked at every 250 ms (a constant of teloxide's), so
//! replies that follow each other closely are spaced by up to that; a person typing does not
//! notice. It does not queue `editMessageText` or `answerCallbackQuery` (it passes them
//! straight to the Bot API): a button's answer is never held behind other users' replies, and
//! [`edit`] waits out a 429 itself.
//!
//! The notifications reactor (`notifications.rs`) talks to Telegram with a bot of its own
//! and waits out flood control in its own, checkpointed, way.

use teloxide::adaptors::throttle::{Limits, Throttle};
use teloxide::payloads::{EditMessageTextSetters, SendMessageSetters};
use teloxide::prelude::{Requester, RequesterExt};
use teloxide::types::{ChatId, MessageId};
use teloxide::{ApiError, Bot, RequestError};

use super::flows::{Answer, HandlerResult};

/// The bot the handlers reply with.
pub type ReplyBot = Throttle<Bot>;

/// Telegram's guidance (Bots FAQ, "My bot is hitting limits"): in one chat about one message
/// a second, short bursts allowed; about 30 a second over all chats; 20 a minute in a group.
/// teloxide's defaults hold every chat to the group's 20 a minute and one a second, which
/// would make a user who sends a few commands at once wait a second for each answer (and
/// would slow the bot tests, whose users type fast, several times over); the shop serves
/// private chats only, and its own per-user limits (`limits.rs`, 30 messages a minute by
/// default) already keep one user's replies far below a flood.
const LIMITS: Limits = Limits {
    // A short burst: a few commands sent together are answered without a second's wait
    // each.
    messages_per_sec_chat: 3,
    // One a second averaged over the minute, Telegram's guidance for one chat.
    messages_per_min_chat: 60,
    // Groups and channels are not served (`flows::on_message`); Telegram's number for them.
    messages_per_min_channel_or_supergroup: 20,
    // Over all chats, as Telegram documents.
    messages_per_sec_overall: 30,
};

/// How many times an edit Telegram answers with 429 is tried again, each after the wait it
/// names, before it is given up (and logged by the dispatcher's error handler). Telegram asks
/// for one wait when a chat is flooded; a few tries cover that without holding the chat's
/// later updates (the dispatcher handles one chat's updates in order) behind an endless one.
const EDIT_RETRIES: u32 = 5;

/// Wraps `bot` for replies; spawns the throttle's queue, which ends with the last clone.
pub fn reply_bot(bot: Bot) -> ReplyBot {
    bot.throttle(LIMITS)
}

/// Sends `answer` as a new message in `chat`.
pub async fn send(bot: &ReplyBot, chat: ChatId, answer: Answer) -> HandlerResult {
    let request = bot.send_message(chat, answer.text);
    match answer.markup {
        Some(markup) => request.reply_markup(markup).await?,
        None => request.await?,
    };
    Ok(())
}

/// Replaces the pressed message (a history page, or an offer with its outcome; the offer's
/// buttons go away, so it cannot be confirmed from there again).
pub async fn edit(
    bot: &ReplyBot,
    chat: ChatId,
    message: MessageId,
    answer: Answer,
) -> HandlerResult {
    let mut retries = 0;
    let result = loop {
        let request = bot.edit_message_text(chat, message, answer.text.clone());
        let result = match answer.markup.clone() {
            Some(markup) => request.reply_markup(markup).await,
            None => request.await,
        };
        match result {
            Err(RequestError::RetryAfter(wait)) if retries < EDIT_RETRIES => {
                retries += 1;
                tracing::warn!(
                    retry_in_ms = wait.duration().as_millis() as u64,
                    "bot: Telegram's flood control held an edit; trying again"
                );
                tokio::time::sleep(wait.duration()).await;
            }
            result => break result,
        }
    };
    match result {
        Ok(_) => Ok(()),
        // Pressing the same page twice changes nothing; Telegram says so, and that is fine.
        Err(RequestError::Api(ApiError::MessageNotModified)) => Ok(()),
        // A message too old to edit (or gone): say it in a new one instead.
        Err(RequestError::Api(_)) => send(bot, chat, answer).await,
        Err(error) => Err(error),
    }
}
