//! What a failed Bot API call means for whoever made it, and how to log it without the token.
//!
//! A user who blocked the bot, deleted their account or never opened a chat with it will
//! never be reachable: retrying only piles up work, so those are [`Failure::Unreachable`].
//! A request Telegram refuses as it stands (any other 400: a message it will not take, a
//! chat it will not write to) will be refused again: [`Failure::Rejected`]. Telegram's flood
//! control (429) says how long to wait ([`Failure::RetryAfter`]). What may pass — network
//! errors, 5xx, an answer we cannot read, and a refused token (every call fails alike until an
//! operator fixes it, so no single message is to blame) — is [`Failure::Transient`].
//!
//! Every request URL carries the bot token (`…/bot<token>/sendMessage`), and reqwest's errors
//! quote the URL: [`describe`] cuts the token out of whatever is about to be logged.

use std::time::Duration;

use teloxide::{ApiError, RequestError};

use starledger_settings::Secret;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The chat cannot be written to, now or later.
    Unreachable,
    /// This request is refused as it stands (a 400): sending it again changes nothing.
    Rejected,
    /// Flood control: try again after this long.
    RetryAfter(Duration),
    /// Anything that may pass: try again.
    Transient,
}

pub fn classify(error: &RequestError) -> Failure {
    match error {
        RequestError::RetryAfter(seconds) => Failure::RetryAfter(seconds.duration()),
        RequestError::Api(
            ApiError::BotBlocked
            | ApiError::UserDeactivated
            | ApiError::ChatNotFound
            | ApiError::BotKicked
            | ApiError::BotKickedFromSupergroup
            | ApiError::BotKickedFromChannel
            | ApiError::CantInitiateConversation
            | ApiError::CantTalkWithBots,
        ) => Failure::Unreachable,
        // teloxide keeps the description, not the status code: every 403 description starts
        // with "Forbidden:".
        RequestError::Api(ApiError::Unknown(description))
            if description.starts_with("Forbidden") =>
        {
            Failure::Unreachable
        }
        RequestError::MigrateToChatId(_) => Failure::Unreachable,
        RequestError::Api(ApiError::Unknown(description))
            if description.starts_with("Bad Request") =>
        {
            Failure::Rejected
        }
        // Not about this message: every call fails alike until the token or the other
        // poller is dealt with.
        RequestError::Api(ApiError::InvalidToken | ApiError::TerminatedByOtherGetUpdates) => {
            Failure::Transient
        }
        // 5xx and whatever else Telegram answers without a known 400 description.
        RequestError::Api(ApiError::Unknown(_)) => Failure::Transient,
        // Every other typed error is a 400 Telegram names: this request, refused.
        RequestError::Api(_) => Failure::Rejected,
        RequestError::Network(_) | RequestError::InvalidJson { .. } | RequestError::Io(_) => {
            Failure::Transient
        }
    }
}

/// The error as text with the bot token removed.
pub fn describe(error: &RequestError, token: &Secret) -> String {
    let text = error.to_string();
    if token.expose().is_empty() {
        return text;
    }
    text.replace(token.expose(), "<token>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_and_forbidden_are_unreachable_flood_control_waits_the_rest_retries() {
        assert_eq!(
            classify(&RequestError::Api(ApiError::BotBlocked)),
            Failure::Unreachable
        );
        assert_eq!(
            classify(&RequestError::Api(ApiError::Unknown(
                "Forbidden: something new".into()
            ))),
            Failure::Unreachable
        );
        let flood: teloxide::types::Seconds = serde_json::from_str("3").unwrap();
        assert_eq!(
            classify(&RequestError::RetryAfter(flood)),
            Failure::RetryAfter(Duration::from_secs(3))
        );
        assert_eq!(
            classify(&RequestError::Api(ApiError::Unknown(
                "Internal Server Error".into()
            ))),
            Failure::Transient
        );
        assert_eq!(
            classify(&RequestError::Api(ApiError::InvalidToken)),
            Failure::Transient,
            "a refused token is not this message's fault"
        );
    }

    #[test]
    fn other_bad_requests_are_rejected_for_good() {
        for error in [
            ApiError::Unknown("Bad Request: TOPIC_CLOSED".into()),
            ApiError::MessageIsTooLong,
            ApiError::MessageTextIsEmpty,
        ] {
            assert_eq!(
                classify(&RequestError::Api(error.clone())),
                Failure::Rejected,
                "{error:?}"
            );
        }
    }

    #[test]
    fn the_token_is_cut_out_of_descriptions() {
        let token = Secret::new("123:secret-token");
        let error = RequestError::Api(ApiError::Unknown(
            "failed https://api.telegram.org/bot123:secret-token/sendMessage".into(),
        ));
        let text = describe(&error, &token);
        assert!(!text.contains("secret-token"), "{text}");
        assert!(text.contains("<token>"), "{text}");
    }
}
