//! The catalogue of error codes the API answers in `{"error":{"code","message"}}`: each code's
//! wire string, HTTP status and meaning, in one table. The API document
//! ([`super::openapi`]) explains each operation's error answers from it, and
//! `gateway/starledger/tests/openapi.rs` checks that every code there is is documented.
//!
//! The wire strings are a contract: clients and black-box tests match on them. Change a
//! variant's name freely, never its string.
//!
//! A code has one status, except the few in [`ErrorCode::OTHER_STATUSES`], which a call site
//! may answer with another one (through [`super::error::ApiError::with_status`]). A ledger
//! [`Rejection`] maps to a code of its own with an exhaustive match, so a new rejection
//! cannot compile without one; the few no HTTP route can meet are listed, with why, in
//! [`ErrorCode::NOT_ANSWERED`].

use std::fmt;

use actix_web::http::StatusCode;
use starledger_ledger::account::Rejection;

/// Declares [`ErrorCode`] with [`ErrorCode::ALL`], [`ErrorCode::as_str`] and
/// [`ErrorCode::status`] from one table, so no variant can be left out of any of them.
macro_rules! catalogue {
    ($( #[doc = $doc:literal] $(#[doc = $more:literal])* $variant:ident = $wire:literal, $status:ident; )*) => {
        /// A machine-readable reason for an error answer.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $( #[doc = $doc] $(#[doc = $more])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in the order of the table.
            pub const ALL: &'static [ErrorCode] = &[$(Self::$variant),*];

            /// The code as the API writes it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire,)*
                }
            }

            /// What the code means, as the API document explains it: the variant's doc
            /// comment, one line per line of it.
            pub const fn doc(self) -> &'static str {
                match self {
                    $(Self::$variant => concat!($doc $(, "\n", $more)*),)*
                }
            }

            /// The status the code is answered with (see also [`Self::OTHER_STATUSES`]).
            pub const fn status(self) -> StatusCode {
                match self {
                    $(Self::$variant => StatusCode::$status,)*
                }
            }
        }
    };
}

catalogue! {
    // The caller, the route and the request as a whole.
    /// No `Authorization: Bearer <key>`, or an unknown key.
    Unauthenticated = "unauthenticated", UNAUTHORIZED;
    /// The key's role may not do this.
    Forbidden = "forbidden", FORBIDDEN;
    /// No such route, or one this instance does not serve.
    NotFound = "not_found", NOT_FOUND;
    /// The query string does not parse.
    InvalidQuery = "invalid_query", BAD_REQUEST;
    /// The body is larger than `MAX_BODY_BYTES`.
    BodyTooLarge = "body_too_large", PAYLOAD_TOO_LARGE;
    /// The connection failed while the body was read.
    UnreadableBody = "unreadable_body", BAD_REQUEST;
    /// The body is not JSON (or not a JSON object where one is needed).
    MalformedJson = "malformed_json", BAD_REQUEST;
    /// The JSON has the wrong shape, a wrong type, an unknown or a missing field.
    InvalidRequest = "invalid_request", UNPROCESSABLE_ENTITY;

    // Ours or a dependency's: retry.
    /// The event log, the read models or another part of ours is unavailable.
    Unavailable = "unavailable", SERVICE_UNAVAILABLE;
    /// The request was not answered within `REQUEST_TIMEOUT_MS`.
    DeadlineExceeded = "deadline_exceeded", SERVICE_UNAVAILABLE;
    /// Too many concurrent writes to one account.
    Busy = "busy", SERVICE_UNAVAILABLE;
    /// The read models have not reached the `min_position` asked for in time.
    ProjectionLagging = "projection_lagging", SERVICE_UNAVAILABLE;

    // Identifiers, keys and paging.
    /// A user id that is not a positive Telegram user id: 400 in a path, 422 in a body.
    InvalidUserId = "invalid_user_id", BAD_REQUEST;
    /// A purchase id in a path that is not a UUID.
    InvalidPurchaseId = "invalid_purchase_id", BAD_REQUEST;
    /// A recharge id in a path that is not a UUID.
    InvalidRechargeId = "invalid_recharge_id", BAD_REQUEST;
    /// An `Idempotency-Key` header that is empty, too long or not printable ASCII.
    InvalidIdempotencyKey = "invalid_idempotency_key", BAD_REQUEST;
    /// A command that moves money without an `Idempotency-Key` header.
    MissingIdempotencyKey = "missing_idempotency_key", BAD_REQUEST;
    /// The `Idempotency-Key` was already used for a different request.
    IdempotencyKeyReused = "idempotency_key_reused", UNPROCESSABLE_ENTITY;
    /// A page size out of range.
    InvalidLimit = "invalid_limit", BAD_REQUEST;
    /// A paging cursor past the end.
    InvalidCursor = "invalid_cursor", BAD_REQUEST;
    /// A log position (`from`, `min_position`) past the log's range or its head.
    InvalidPosition = "invalid_position", BAD_REQUEST;
    /// A verification `scope` other than `log` or `all`.
    InvalidScope = "invalid_scope", BAD_REQUEST;
    /// A time that is not RFC 3339.
    InvalidTime = "invalid_time", BAD_REQUEST;

    // What a request asks for.
    /// An amount that is not a decimal string the ledger accepts.
    InvalidAmount = "invalid_amount", UNPROCESSABLE_ENTITY;
    /// A number of Stars out of range, or one with no price.
    InvalidStars = "invalid_stars", UNPROCESSABLE_ENTITY;
    /// A gift recipient that is not a Telegram username.
    InvalidRecipient = "invalid_recipient", UNPROCESSABLE_ENTITY;
    /// An order for the buyer's own account, and the buyer has no Telegram username.
    NoUsername = "no_username", UNPROCESSABLE_ENTITY;
    /// A projection name the rebuild does not know.
    UnknownProjection = "unknown_projection", UNPROCESSABLE_ENTITY;
    /// A sandbox payment status Heleket does not have.
    InvalidStatus = "invalid_status", UNPROCESSABLE_ENTITY;
    /// No such audit job on this instance.
    UnknownJob = "unknown_job", NOT_FOUND;
    /// No rebuild has been started by this instance.
    NoRebuild = "no_rebuild", NOT_FOUND;
    /// No such sandbox invoice.
    UnknownInvoice = "unknown_invoice", NOT_FOUND;
    /// A rebuild is already running.
    RebuildRunning = "rebuild_running", CONFLICT;
    /// Another audit job is running.
    AuditJobRunning = "audit_job_running", CONFLICT;

    // Webhooks.
    /// A Heleket webhook from an address not on the allowlist.
    ForbiddenSender = "forbidden_sender", FORBIDDEN;
    /// A Heleket webhook whose signature is missing or wrong.
    InvalidSignature = "invalid_signature", UNAUTHORIZED;
    /// A signed Heleket webhook whose fields cannot be used.
    InvalidWebhook = "invalid_webhook", UNPROCESSABLE_ENTITY;
    /// A Telegram webhook without the right secret token.
    InvalidSecretToken = "invalid_secret_token", UNAUTHORIZED;

    // The payment provider.
    /// Heleket refused to create the invoice.
    PaymentProviderRefused = "payment_provider_refused", BAD_GATEWAY;
    /// Heleket gave an answer that cannot be used.
    PaymentProviderError = "payment_provider_error", BAD_GATEWAY;
    /// Heleket cannot be reached (or its circuit breaker is open).
    PaymentProviderUnavailable = "payment_provider_unavailable", SERVICE_UNAVAILABLE;

    // The ledger's rejections (`Rejection::code`), one each.
    /// No such user: not registered (or not projected yet).
    UnknownUser = "unknown_user", NOT_FOUND;
    /// The account was opened by another path (e.g. `starledger demo`), not through this endpoint.
    AlreadyRegistered = "already_registered", CONFLICT;
    /// A profile update that changes nothing.
    ProfileUnchanged = "profile_unchanged", CONFLICT;
    /// Money in another currency than the account's.
    CurrencyMismatch = "currency_mismatch", UNPROCESSABLE_ENTITY;
    /// A recharge with this id exists already, for another request.
    DuplicateRecharge = "duplicate_recharge", CONFLICT;
    /// No such recharge (one made a moment ago may not be projected yet).
    UnknownRecharge = "unknown_recharge", NOT_FOUND;
    /// The recharge is settled already.
    RechargeAlreadySettled = "recharge_already_settled", CONFLICT;
    /// The recharge failed already.
    RechargeAlreadyFailed = "recharge_already_failed", CONFLICT;
    /// The recharge was reversed already.
    RechargeAlreadyReversed = "recharge_already_reversed", CONFLICT;
    /// The recharge is on hold already.
    RechargeAlreadyHeld = "recharge_already_held", CONFLICT;
    /// The recharge waits for an operator's decision.
    RechargeInReview = "recharge_in_review", CONFLICT;
    /// The recharge is neither in review nor on hold: nothing to decide.
    RechargeNotAwaitingDecision = "recharge_not_awaiting_decision", CONFLICT;
    /// The account owes money after a refunded payment whose credit was spent; no purchase until the next credit pays it.
    AccountInDebt = "account_in_debt", UNPROCESSABLE_ENTITY;
    /// A payment to Fragment is recorded for this purchase: failing it needs `"force": true` (the operator checked it did not deliver).
    PaymentRecorded = "payment_recorded", CONFLICT;
    /// A payment tolerance out of range.
    InvalidTolerance = "invalid_tolerance", UNPROCESSABLE_ENTITY;
    /// A payment report the ledger cannot use.
    InvalidFacts = "invalid_facts", UNPROCESSABLE_ENTITY;
    /// The available balance does not cover the price.
    InsufficientFunds = "insufficient_funds", UNPROCESSABLE_ENTITY;
    /// A purchase with this id exists already, for another request.
    DuplicatePurchase = "duplicate_purchase", CONFLICT;
    /// No such purchase (one made a moment ago may not be projected yet).
    UnknownPurchase = "unknown_purchase", NOT_FOUND;
    /// The purchase is completed or refunded already.
    PurchaseNotOpen = "purchase_not_open", CONFLICT;
    /// A payment attempt to Fragment out of order.
    PaymentAttemptOutOfOrder = "payment_attempt_out_of_order", CONFLICT;
    /// An adjustment with this id exists already, for another request.
    DuplicateAdjustment = "duplicate_adjustment", CONFLICT;
    /// A debit larger than the available balance.
    AdjustmentWouldOverdraw = "adjustment_would_overdraw", UNPROCESSABLE_ENTITY;
    /// Free text (username, language, reason, note) empty, too long or with control characters.
    InvalidText = "invalid_text", UNPROCESSABLE_ENTITY;
}

impl ErrorCode {
    /// Statuses a code is also answered with, besides its own [`ErrorCode::status`].
    pub const OTHER_STATUSES: &'static [(ErrorCode, StatusCode)] = &[
        // `POST /v1/users` reads the user id from the body, where a bad one is 422 like
        // every other bad field; a path with one is 400.
        (Self::InvalidUserId, StatusCode::UNPROCESSABLE_ENTITY),
    ];

    /// Codes no HTTP route can answer, and why: the API documents what it answers, and these
    /// it never does. A ledger rejection belongs here only when no command a route runs can
    /// meet it, or the route turns it into a success.
    pub const NOT_ANSWERED: &'static [(ErrorCode, &'static str)] = &[
        (
            Self::ProfileUnchanged,
            "only the bot records profile updates, and it takes this refusal as done",
        ),
        (
            Self::PaymentAttemptOutOfOrder,
            "only the fulfilment worker records payments to Fragment",
        ),
        (
            Self::RechargeAlreadySettled,
            "a payment report the recharge is past is answered 200 `ignored` to Heleket",
        ),
        (
            Self::RechargeAlreadyFailed,
            "a payment report the recharge is past is answered 200 `ignored` to Heleket",
        ),
        (
            Self::RechargeAlreadyReversed,
            "a payment report the recharge is past is answered 200 `ignored` to Heleket",
        ),
        (
            Self::RechargeAlreadyHeld,
            "a payment report the recharge is past is answered 200 `ignored` to Heleket",
        ),
        (
            Self::RechargeInReview,
            "a payment report the recharge is past is answered 200 `ignored` to Heleket",
        ),
        (
            Self::InvalidTolerance,
            "the tolerance is configuration, checked at startup; a refused payment report is \
             answered 200 `ignored` to Heleket",
        ),
        (
            Self::InvalidFacts,
            "a refused payment report is answered 200 `ignored` to Heleket",
        ),
    ];

    /// Every status the code can be answered with, its own first.
    pub fn statuses(self) -> impl Iterator<Item = StatusCode> {
        std::iter::once(self.status()).chain(
            Self::OTHER_STATUSES
                .iter()
                .filter(move |(code, _)| *code == self)
                .map(|(_, status)| *status),
        )
    }

    /// Whether some HTTP route can answer this code (it is not in [`Self::NOT_ANSWERED`]).
    pub fn is_answered(self) -> bool {
        !Self::NOT_ANSWERED.iter().any(|(code, _)| *code == self)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Each rejection its own code. No wildcard: a new rejection does not compile without one.
impl From<&Rejection> for ErrorCode {
    fn from(rejection: &Rejection) -> Self {
        match rejection {
            Rejection::UnknownUser => Self::UnknownUser,
            Rejection::AlreadyRegistered => Self::AlreadyRegistered,
            Rejection::ProfileUnchanged => Self::ProfileUnchanged,
            Rejection::CurrencyMismatch { .. } => Self::CurrencyMismatch,
            Rejection::DuplicateRecharge(_) => Self::DuplicateRecharge,
            Rejection::UnknownRecharge(_) => Self::UnknownRecharge,
            Rejection::RechargeAlreadySettled(_) => Self::RechargeAlreadySettled,
            Rejection::RechargeAlreadyFailed(_) => Self::RechargeAlreadyFailed,
            Rejection::RechargeAlreadyReversed(_) => Self::RechargeAlreadyReversed,
            Rejection::RechargeAlreadyHeld(_) => Self::RechargeAlreadyHeld,
            Rejection::RechargeInReview(_) => Self::RechargeInReview,
            Rejection::RechargeNotAwaitingDecision { .. } => Self::RechargeNotAwaitingDecision,
            Rejection::AccountInDebt { .. } => Self::AccountInDebt,
            Rejection::PaymentRecorded(_) => Self::PaymentRecorded,
            Rejection::InvalidTolerance { .. } => Self::InvalidTolerance,
            Rejection::InvalidFacts { .. } => Self::InvalidFacts,
            Rejection::InsufficientFunds { .. } => Self::InsufficientFunds,
            Rejection::DuplicatePurchase(_) => Self::DuplicatePurchase,
            Rejection::UnknownPurchase(_) => Self::UnknownPurchase,
            Rejection::PurchaseNotOpen { .. } => Self::PurchaseNotOpen,
            Rejection::PaymentAttemptOutOfOrder { .. } => Self::PaymentAttemptOutOfOrder,
            Rejection::DuplicateAdjustment(_) => Self::DuplicateAdjustment,
            Rejection::AdjustmentWouldOverdraw { .. } => Self::AdjustmentWouldOverdraw,
            Rejection::InvalidText { .. } => Self::InvalidText,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rust_decimal::Decimal;
    use starledger_ledger::account::PurchaseStatus;
    use starledger_ledger::ids::{AdjustmentId, PurchaseId, RechargeId};
    use starledger_ledger::money::Currency;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn every_code_is_listed_once_with_a_unique_wire_string() {
        let codes: BTreeSet<ErrorCode> = ErrorCode::ALL.iter().copied().collect();
        assert_eq!(codes.len(), ErrorCode::ALL.len(), "a code is listed twice");
        let wire: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(wire.len(), ErrorCode::ALL.len(), "two codes share a string");
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(
                !text.is_empty() && text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code:?}: {text:?} is not snake_case"
            );
            assert!(
                code.status().is_client_error() || code.status().is_server_error(),
                "{code:?}: {} is no error status",
                code.status()
            );
        }
    }

    #[test]
    fn other_statuses_and_unanswered_codes_are_listed_once_and_differ_from_the_own() {
        let mut seen = BTreeSet::new();
        for (code, status) in ErrorCode::OTHER_STATUSES {
            assert_ne!(*status, code.status(), "{code:?}: its own status again");
            assert!(seen.insert((*code, status.as_u16())), "{code:?} {status}");
            assert!(
                code.is_answered(),
                "{code:?} has another status but is never answered"
            );
        }
        let unanswered: BTreeSet<ErrorCode> =
            ErrorCode::NOT_ANSWERED.iter().map(|(c, _)| *c).collect();
        assert_eq!(unanswered.len(), ErrorCode::NOT_ANSWERED.len());
    }

    fn every_rejection() -> Vec<Rejection> {
        let (recharge, purchase) = (
            RechargeId::from_uuid(Uuid::nil()),
            PurchaseId::from_uuid(Uuid::nil()),
        );
        let ton = Currency::ton();
        vec![
            Rejection::UnknownUser,
            Rejection::AlreadyRegistered,
            Rejection::ProfileUnchanged,
            Rejection::CurrencyMismatch {
                account: ton.clone(),
                got: ton,
            },
            Rejection::DuplicateRecharge(recharge),
            Rejection::UnknownRecharge(recharge),
            Rejection::RechargeAlreadySettled(recharge),
            Rejection::RechargeAlreadyFailed(recharge),
            Rejection::RechargeAlreadyReversed(recharge),
            Rejection::RechargeAlreadyHeld(recharge),
            Rejection::RechargeInReview(recharge),
            Rejection::RechargeNotAwaitingDecision {
                recharge_id: recharge,
                status: "settled",
            },
            Rejection::AccountInDebt { debt: Decimal::ONE },
            Rejection::PaymentRecorded(purchase),
            Rejection::InvalidTolerance { max: 1 },
            Rejection::InvalidFacts { max: 1 },
            Rejection::InsufficientFunds {
                available: Decimal::ZERO,
                required: Decimal::ONE,
            },
            Rejection::DuplicatePurchase(purchase),
            Rejection::UnknownPurchase(purchase),
            Rejection::PurchaseNotOpen {
                purchase_id: purchase,
                status: PurchaseStatus::Completed,
            },
            Rejection::PaymentAttemptOutOfOrder {
                purchase_id: purchase,
                expected: 1,
                got: 2,
            },
            Rejection::DuplicateAdjustment(AdjustmentId::from_uuid(Uuid::nil())),
            Rejection::AdjustmentWouldOverdraw {
                amount: Decimal::ONE,
                available: Decimal::ZERO,
            },
            Rejection::InvalidText {
                field: "reason",
                max: 1,
            },
        ]
    }

    #[test]
    fn each_rejection_keeps_its_wire_code_and_status() {
        let rejections = every_rejection();
        let mut codes = BTreeSet::new();
        for rejection in &rejections {
            let code = ErrorCode::from(rejection);
            assert_eq!(code.as_str(), rejection.code(), "{rejection:?}");
            assert!(codes.insert(code), "{rejection:?} shares {code:?}");
            // The statuses the gateway answered rejections with before the catalogue.
            let expected = match rejection.code() {
                "unknown_user" | "unknown_recharge" | "unknown_purchase" => StatusCode::NOT_FOUND,
                "currency_mismatch"
                | "insufficient_funds"
                | "account_in_debt"
                | "adjustment_would_overdraw"
                | "invalid_tolerance"
                | "invalid_facts"
                | "invalid_text" => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::CONFLICT,
            };
            assert_eq!(code.status(), expected, "{rejection:?}");
        }
    }
}
