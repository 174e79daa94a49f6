//! Webhook mode's inbox: Telegram posts each update to `POST /webhooks/telegram` (the actix
//! route in `starledger-http`), which checks the secret token here and hands the body in
//! through the shop core's [`UpdateInbox`]; the update is read and queued, and the bot's
//! dispatcher reads it from the other end of the channel (`webhook::listener`).
//!
//! The HTTP crate knows only the trait, so neither front door imports the other. The bot makes
//! the inbox at start in webhook mode, and `serve` hands it to the route.
//!
//! The secret Telegram sends in `X-Telegram-Bot-Api-Secret-Token` is compared in constant
//! time, so its bytes cannot be guessed from response times.

use subtle::ConstantTimeEq;
use teloxide::types::Update;
use tokio::sync::mpsc;

use starledger_settings::Secret;
use starledger_shop::inbox::{InboxError, UpdateInbox};

/// Updates waiting for the dispatcher. Past this, the route answers 503 and Telegram retries.
const INBOX_CAPACITY: usize = 4_096;

/// Where the webhook route puts updates.
pub struct WebhookInbox {
    secret: Secret,
    sender: mpsc::Sender<Update>,
}

impl WebhookInbox {
    /// The inbox and the receiving end the listener reads.
    pub fn new(secret: Secret) -> (Self, mpsc::Receiver<Update>) {
        let (sender, receiver) = mpsc::channel(INBOX_CAPACITY);
        (Self { secret, sender }, receiver)
    }
}

impl UpdateInbox for WebhookInbox {
    fn authorized(&self, header: Option<&[u8]>) -> bool {
        header.is_some_and(|given| bool::from(given.ct_eq(self.secret.expose().as_bytes())))
    }

    fn deliver(&self, body: &[u8]) -> Result<(), InboxError> {
        let update: Update = serde_json::from_slice(body).map_err(InboxError::Malformed)?;
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
