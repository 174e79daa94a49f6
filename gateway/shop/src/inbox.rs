//! Webhook mode's inbox, as both front doors see it: Telegram posts each update to
//! `POST /webhooks/telegram` (in `starledger-http`), which hands the update's bytes to an
//! [`UpdateInbox`]; the bot (`starledger-bot`, `inbox.rs`) implements it, reading the update
//! into its own types and queueing it for the dispatcher.
//!
//! It lives in the shop core so that neither front door imports the other, and so that the
//! HTTP crate needs no Telegram types: it passes bytes, and the bot says whether they were an
//! update.

/// Where the webhook route puts Telegram's updates.
pub trait UpdateInbox: Send + Sync {
    /// Whether `secret_header` (`X-Telegram-Bot-Api-Secret-Token`) is our secret token,
    /// compared in constant time.
    fn authorized(&self, secret_header: Option<&[u8]>) -> bool;

    /// Reads `body` as one update and queues it without waiting. An update that does not
    /// parse is [`InboxError::Malformed`] and queues nothing; a full or closed inbox is
    /// [`InboxError::Unavailable`], so Telegram gets a 5xx and delivers the update again.
    fn deliver(&self, body: &[u8]) -> Result<(), InboxError>;
}

/// Why an update was not taken.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error("the body is not a Telegram update: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("the bot is not taking updates (stopping, or too far behind)")]
    Unavailable,
}
