//! Webhook mode's inbox: Telegram posts each update to `POST /webhooks/telegram` (the actix
//! route in `http/telegram.rs`), which checks the secret token here and queues the update; the
//! bot's dispatcher reads them from the other end of the channel (`bot::webhook::listener`).
//!
//! It lives outside both front doors so that neither imports the other: `http` hands updates
//! in, the bot takes them out. The bot makes the inbox at start in webhook mode, and `serve`
//! hands it to the route.
//!
//! The secret Telegram sends in `X-Telegram-Bot-Api-Secret-Token` is compared in constant
//! time, so its bytes cannot be guessed from response times.

use subtle::ConstantTimeEq;
use teloxide::types::Update;
use tokio::sync::mpsc;

use crate::config::server::Secret;

/// Updates waiting for the dispatcher. Past this, the route answers 503 and Telegram retries.
const INBOX_CAPACITY: usize = 4_096;

/// Where the webhook route puts updates.
pub struct WebhookInbox {
    secret: Secret,
    sender: mpsc::Sender<Update>,
}

/// Why an update was not taken.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error("the bot is not taking updates (stopping, or too far behind)")]
    Unavailable,
}

impl WebhookInbox {
    /// The inbox and the receiving end the listener reads.
    pub fn new(secret: Secret) -> (Self, mpsc::Receiver<Update>) {
        let (sender, receiver) = mpsc::channel(INBOX_CAPACITY);
        (Self { secret, sender }, receiver)
    }

    /// Whether `header` is our secret token.
    pub fn authorized(&self, header: Option<&[u8]>) -> bool {
        header.is_some_and(|given| bool::from(given.ct_eq(self.secret.expose().as_bytes())))
    }

    /// Queues an update for the dispatcher without waiting: a full or closed inbox is an
    /// error, so Telegram gets a 5xx and delivers the update again later.
    pub fn deliver(&self, update: Update) -> Result<(), InboxError> {
        self.sender
            .try_send(update)
            .map_err(|_| InboxError::Unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_secret_is_authorized() {
        let (inbox, _receiver) = WebhookInbox::new(Secret::new("0123456789abcdef"));
        assert!(inbox.authorized(Some(b"0123456789abcdef")));
        for wrong in [
            &b""[..],
            b"0123456789abcde",
            b"0123456789abcdef0",
            b"0123456789abcdeF",
        ] {
            assert!(!inbox.authorized(Some(wrong)), "{wrong:?}");
        }
        assert!(!inbox.authorized(None));
    }
}
