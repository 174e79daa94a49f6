//! Identifiers: users, streams, recharges, purchases, adjustments, events and idempotency keys.
//!
//! Every id that can be retried is *derived* (UUIDv5) from the command's idempotency key, so a
//! retried command names the same recharge, purchase or event as the first attempt and the
//! store can recognise it instead of recording it twice.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::money::truncate_for_message;

/// Namespace of all starledger UUIDv5 derivations (a fixed random UUID; never change it, or
/// retries after an upgrade would stop being recognised).
const NAMESPACE: Uuid = Uuid::from_u128(0x6f1d_5a3e_2c4b_4f0a_9e57_1b2d_8c3f_a410);

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("user id must be a positive Telegram id, got {0}")]
    User(i64),
    #[error("stream id {0:?} is not of the form account-<user id>")]
    Stream(String),
    #[error("idempotency key must be 1 to 200 printable ASCII characters")]
    IdempotencyKey,
    #[error(
        "{0:?} is not a Telegram username (5 to 32 letters, digits or _, starting with a letter)"
    )]
    Username(String),
}

/// A Telegram user id. Telegram ids are positive and fit in 52 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct UserId(i64);

impl UserId {
    pub const MAX: i64 = 1 << 52;

    pub fn new(id: i64) -> Result<Self, IdError> {
        if id > 0 && id < Self::MAX {
            Ok(Self(id))
        } else {
            Err(IdError::User(id))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }

    /// The event stream that holds this user's account.
    pub fn stream(self) -> StreamId {
        StreamId(format!("account-{}", self.0))
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        UserId::new(i64::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// The name of one event stream (`account-<user id>`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StreamId(String);

impl StreamId {
    /// Accepts only account streams; the ledger has no other kind yet.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let user = text
            .strip_prefix("account-")
            .and_then(|n| n.parse::<i64>().ok())
            .and_then(|n| UserId::new(n).ok())
            .ok_or_else(|| IdError::Stream(truncate_for_message(text)))?;
        Ok(user.stream())
    }

    pub fn user(&self) -> Option<UserId> {
        self.0
            .strip_prefix("account-")
            .and_then(|n| n.parse().ok())
            .and_then(|n| UserId::new(n).ok())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What makes a command unique: a Telegram update id, Heleket `uuid`+`status`, an API
/// `Idempotency-Key` header. Callers prefix it with its source (`tg:`, `heleket:`, `api:`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let valid =
            (1..=200).contains(&text.len()) && text.bytes().all(|b| (0x21..0x7f).contains(&b));
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(IdError::IdempotencyKey)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of the `index`-th event a command with this key appends to `stream`.
    pub fn event_id(&self, stream: &StreamId, index: usize) -> EventId {
        EventId(derive(&[
            "event",
            stream.as_str(),
            &self.0,
            &index.to_string(),
        ]))
    }
}

fn derive(parts: &[&str]) -> Uuid {
    // Length-prefixing keeps ("ab","c") and ("a","bc") apart.
    let mut name = Vec::new();
    for part in parts {
        name.extend_from_slice(&(part.len() as u32).to_be_bytes());
        name.extend_from_slice(part.as_bytes());
    }
    Uuid::new_v5(&NAMESPACE, &name)
}

macro_rules! derived_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// The id a command with this idempotency key creates for this user.
            pub fn derive(user: UserId, key: &IdempotencyKey) -> Self {
                Self(derive(&[$kind, &user.to_string(), key.as_str()]))
            }

            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            pub fn uuid(self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

derived_id!(
    /// One top-up of a user's balance through Heleket.
    RechargeId,
    "recharge"
);
derived_id!(
    /// One Stars order.
    PurchaseId,
    "purchase"
);
derived_id!(
    /// One admin balance correction.
    AdjustmentId,
    "adjustment"
);

/// The unique id of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub Uuid);

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A Telegram username, stored without the leading `@`: a letter, then letters, digits and
/// underscores, 4 to 32 in all. Ordinary usernames have at least 5 characters; the 4-character
/// ones are Telegram's collectible usernames, sold on Fragment, and Fragment delivers Stars to
/// them like to any other.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Username(String);

impl Username {
    /// Shortest username: a collectible one.
    pub const MIN_LEN: usize = 4;
    pub const MAX_LEN: usize = 32;

    pub fn parse(text: &str) -> Result<Self, IdError> {
        let name = text.strip_prefix('@').unwrap_or(text);
        let valid = (Self::MIN_LEN..=Self::MAX_LEN).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && name.as_bytes()[0].is_ascii_alphabetic();
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(IdError::Username(truncate_for_message(text)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who receives the Stars of an order. Either way the name is the one to deliver to, fixed
/// when the buyer confirms: never looked up again later, so a username given up or changed
/// after the order cannot send the Stars to whoever takes it next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// The buyer's own account, by the username Telegram showed for them at confirm time.
    Buyer(Username),
    /// A gift to the username the buyer named.
    Gift(Username),
}

impl Recipient {
    /// The username Fragment delivers to.
    pub fn deliver_to(&self) -> &Username {
        match self {
            Self::Buyer(name) | Self::Gift(name) => name,
        }
    }

    /// The gift's recipient, if this is a gift.
    pub fn gift(&self) -> Option<&Username> {
        match self {
            Self::Gift(name) => Some(name),
            Self::Buyer(_) => None,
        }
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.0)
    }
}

impl<'de> Deserialize<'de> for Username {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Username::parse(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let user = UserId::new(42).unwrap();
        let key = IdempotencyKey::parse("api:abc").unwrap();
        assert_eq!(
            PurchaseId::derive(user, &key),
            PurchaseId::derive(user, &key)
        );
        assert_ne!(
            PurchaseId::derive(user, &key).uuid(),
            RechargeId::derive(user, &key).uuid()
        );
        let other = UserId::new(43).unwrap();
        assert_ne!(
            PurchaseId::derive(user, &key),
            PurchaseId::derive(other, &key)
        );
        let stream = user.stream();
        assert_ne!(key.event_id(&stream, 0), key.event_id(&stream, 1));
    }

    #[test]
    fn stream_ids_round_trip() {
        let user = UserId::new(7).unwrap();
        assert_eq!(StreamId::parse("account-7").unwrap(), user.stream());
        assert_eq!(user.stream().user(), Some(user));
        assert!(StreamId::parse("account--7").is_err());
        assert!(StreamId::parse("other-7").is_err());
    }

    #[test]
    fn usernames_follow_telegram_rules() {
        assert_eq!(Username::parse("@alice_01").unwrap().as_str(), "alice_01");
        // Collectible usernames have four characters; nothing shorter exists.
        assert_eq!(Username::parse("@abcd").unwrap().as_str(), "abcd");
        assert!(Username::parse(&"a".repeat(32)).is_ok());
        for bad in [
            "@abc",
            "1alice",
            "alice-bob",
            "",
            "@",
            "ali ce",
            &"a".repeat(33),
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn idempotency_keys_are_bounded_printable_ascii() {
        assert!(IdempotencyKey::parse("tg:update:123").is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("with space").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(201)).is_err());
    }

    #[test]
    fn user_ids_are_positive() {
        assert!(UserId::new(0).is_err());
        assert!(UserId::new(-5).is_err());
        assert!(serde_json::from_str::<UserId>("-5").is_err());
    }
}
