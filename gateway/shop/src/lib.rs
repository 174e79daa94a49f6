//! What the shop does for a user, in one place for every front door: register, top up
//! (create the Heleket invoice and record the recharge) and buy Stars (price the order and
//! reserve the money). The HTTP API (`http/users.rs`) and the Telegram bot (`bot/`) both call
//! these, so an invoice or a reservation is made the same way whoever asks.
//!
//! Each function runs one ledger command under the caller's idempotency key, then waits
//! (bounded) for the projections to show it, and says whether they do (`projected`), so the
//! caller's next read sees its own write. Errors are typed; each caller decides what they
//! look like to its user (an HTTP status, a chat message).
//!
//! The shop core stands below the front doors: it may depend on the ledger, the projections,
//! `starledger-heleket` and `starledger-telemetry`, never on the front doors
//! (`starledger-http`, `starledger-bot`) or the web and Telegram frameworks they are built on
//! (Cargo enforces it: neither is a dependency). What it reads is in [`Shop`], built once by
//! `serve`; the front doors reach it as `AppState::shop` and `BotState::shop`.
//!
//! - [`settlement`]: what Heleket says about a payment, confirmed and recorded through the
//!   ledger's money rules; one path for webhooks and the reconciler.
//! - [`reconciler`]: settles or fails recharges whose webhooks never came.
//! - [`deadline`]: what a request or a bot reply may still spend, as a plain value.
//! - [`inbox`]: where the webhook route hands Telegram's updates to the bot.

pub mod deadline;
pub mod inbox;
pub mod reconciler;
pub mod settlement;

use std::sync::Arc;
use std::time::Duration;

use starledger_ledger::account::{AccountCommand, Rejection};
use starledger_ledger::commands::{CommandContext, CommandError, Executed, Ledger};
use starledger_ledger::events::{
    AccountEvent, Actor, Invoice, PurchaseRequested, RechargeRequested, Stars, UserRegistered,
};
use starledger_ledger::ids::{IdempotencyKey, PurchaseId, RechargeId, Recipient, UserId, Username};
use starledger_ledger::money::{Amount, Currency};
use starledger_ledger::pricing::{PricingError, StarPricing};
use starledger_projections::queries::Queries;
use starledger_projections::runtime::{self, Progress};
use starledger_projections::store::ReadError;
use tokio::sync::watch;

use crate::deadline::Deadline;
use starledger_heleket::{InvoiceRequest, OrderId, PaymentProvider, ProviderError};

/// What the shop reads: the ledger it writes to, the read side it waits for, the payment
/// provider, the ledger currency and its prices. One per process, shared by every front door.
pub struct Shop {
    pub ledger: Arc<Ledger>,
    /// The cached reads; refreshed for a user after an acknowledged write.
    pub queries: Arc<Queries>,
    /// Where the SQL projectors of this process stand.
    pub projections: watch::Receiver<Progress>,
    pub provider: Arc<dyn PaymentProvider>,
    /// `LEDGER_CURRENCY`: what accounts are kept in and prices are quoted in.
    pub currency: Currency,
    pub pricing: StarPricing,
    pub invoices: InvoiceSettings,
    /// How long a command's answer waits for projections to show it (at most what the
    /// caller's deadline leaves, see [`Deadline::budget`]).
    pub read_your_writes: Duration,
}

/// How the shop asks Heleket for an invoice.
#[derive(Debug, Clone)]
pub struct InvoiceSettings {
    /// Where Heleket sends the invoice's webhooks.
    pub callback_url: String,
    pub lifetime_seconds: u32,
    /// The network of the ledger's coin, the only one invoices accept.
    pub network: String,
}

impl Shop {
    /// Waits, at most the read-your-writes timeout and never past what `deadline` leaves,
    /// until the SQL projections show `position`. Returns whether they do; a timeout is not
    /// an error, because the command is already durable — the answer just says the read side
    /// is behind.
    pub async fn projected(&self, position: u64, deadline: &Deadline) -> bool {
        runtime::wait_for(
            self.projections.clone(),
            position,
            deadline.budget(self.read_your_writes),
        )
        .await
        .is_ok()
    }

    /// [`Self::projected`] for a write about to be acknowledged to `user`'s caller, and then
    /// the user's cached rows refreshed from the projections: acknowledged means visible, so a
    /// plain read on this instance after the 2xx shows the write, not a row cached before it.
    pub async fn acknowledged(&self, user: UserId, position: u64, deadline: &Deadline) -> bool {
        let projected = self.projected(position, deadline).await;
        if projected {
            if let Err(error) = self.queries.refresh(user.get()).await {
                tracing::warn!(%user, %error, "cannot refresh the cached rows of an acknowledged write");
            }
        }
        projected
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    #[error("no such user")]
    UnknownUser,
    /// Prices are in the ledger currency; an account kept in another one (`LEDGER_CURRENCY`
    /// changed after it registered) cannot be charged them.
    #[error("the account is kept in {account}, prices are in {prices}")]
    CurrencyMismatch { account: Currency, prices: Currency },
    /// An order for the buyer's own account, and the buyer has no Telegram username Fragment
    /// could deliver to.
    #[error(
        "the account has no Telegram username to deliver Stars to; set one or name a recipient"
    )]
    NoUsername,
    #[error("no price for {stars} stars: {source}")]
    Pricing { stars: u32, source: PricingError },
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The read models could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The ledger accepted the command but answered with another event: a bug, not input.
    #[error("the ledger answered a {0} with another event")]
    UnexpectedEvent(&'static str),
}

/// A registration, new or repeated.
pub struct Registered {
    pub executed: Executed,
    /// The registration as first recorded (`None` only if the ledger answered oddly).
    pub event: Option<UserRegistered>,
    pub projected: bool,
}

/// A recorded recharge with its invoice.
pub struct Recharge {
    pub executed: Executed,
    pub event: RechargeRequested,
    pub projected: bool,
}

/// A recorded purchase: its price is reserved.
pub struct Purchase {
    pub executed: Executed,
    pub event: PurchaseRequested,
    pub projected: bool,
}

/// Registers `user`. A repeat under the same key returns the first registration.
pub async fn register(
    shop: &Shop,
    user: UserId,
    username: Option<String>,
    language: Option<String>,
    key: IdempotencyKey,
    deadline: &Deadline,
) -> Result<Registered, ShopError> {
    let command = AccountCommand::Register {
        username,
        language,
        currency: shop.currency.clone(),
    };
    let context = CommandContext::new(key, Actor::User(user));
    let executed =
        starledger_telemetry::commands::execute(&shop.ledger, user, command, &context).await?;
    let projected = shop.acknowledged(user, executed.position, deadline).await;
    let event = match executed.events.first() {
        Some(AccountEvent::UserRegistered(e)) => Some(e.clone()),
        _ => None,
    };
    Ok(Registered {
        executed,
        event,
        projected,
    })
}

/// Records `user`'s Telegram profile as an update showed it. `Ok(false)`: it was already the
/// recorded one (another update or instance recorded it first).
pub async fn update_profile(
    shop: &Shop,
    user: UserId,
    username: Option<String>,
    language: Option<String>,
    key: IdempotencyKey,
) -> Result<bool, ShopError> {
    let command = AccountCommand::UpdateProfile { username, language };
    let context = CommandContext::new(key, Actor::User(user));
    match starledger_telemetry::commands::execute(&shop.ledger, user, command, &context).await {
        Ok(_) => Ok(true),
        Err(CommandError::Rejected(Rejection::ProfileUnchanged)) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// Creates the Heleket invoice for a top-up of `amount` and records the recharge.
///
/// The recharge id, and through it the invoice's order id, derive from `key`: a retry asks
/// Heleket for the same order (which answers with the same invoice) and the ledger records
/// nothing new.
pub async fn recharge(
    shop: &Shop,
    user: UserId,
    amount: Amount,
    key: IdempotencyKey,
    deadline: &Deadline,
) -> Result<Recharge, ShopError> {
    // Ask the ledger first, so no invoice is ever created for someone who is not a user.
    if shop.ledger.profile(user).await?.is_none() {
        return Err(ShopError::UnknownUser);
    }
    let recharge_id = RechargeId::derive(user, &key);
    let invoice = shop
        .provider
        .create_invoice(&InvoiceRequest {
            amount,
            currency: shop.currency.clone(),
            network: shop.invoices.network.clone(),
            order_id: OrderId::new(user, recharge_id),
            url_callback: shop.invoices.callback_url.clone(),
            lifetime_seconds: shop.invoices.lifetime_seconds,
        })
        .await?;
    let command = AccountCommand::RequestRecharge {
        recharge_id,
        amount,
        currency: shop.currency.clone(),
        invoice: Invoice {
            uuid: invoice.uuid,
            url: invoice.url,
            expires_at: invoice.expires_at,
        },
    };
    let context = CommandContext::new(key, Actor::User(user));
    let executed =
        starledger_telemetry::commands::execute(&shop.ledger, user, command, &context).await?;
    let projected = shop.acknowledged(user, executed.position, deadline).await;
    let Some(AccountEvent::RechargeRequested(event)) = executed.events.first().cloned() else {
        return Err(ShopError::UnexpectedEvent("recharge"));
    };
    Ok(Recharge {
        executed,
        event,
        projected,
    })
}

/// Prices an order of `stars` for `user` to deliver to `recipient` and reserves the price.
/// The purchase id derives from `key`, so a repeated request buys once.
pub async fn purchase(
    shop: &Shop,
    user: UserId,
    stars: Stars,
    recipient: Recipient,
    key: IdempotencyKey,
    deadline: &Deadline,
) -> Result<Purchase, ShopError> {
    let profile = shop
        .ledger
        .profile(user)
        .await?
        .ok_or(ShopError::UnknownUser)?;
    if profile.currency != shop.currency {
        return Err(ShopError::CurrencyMismatch {
            account: profile.currency,
            prices: shop.currency.clone(),
        });
    }
    let price = quote(shop, stars)?;
    let command = AccountCommand::RequestPurchase {
        purchase_id: PurchaseId::derive(user, &key),
        stars,
        recipient,
        price,
    };
    let context = CommandContext::new(key, Actor::User(user));
    let executed =
        starledger_telemetry::commands::execute(&shop.ledger, user, command, &context).await?;
    let projected = shop.acknowledged(user, executed.position, deadline).await;
    let Some(AccountEvent::PurchaseRequested(event)) = executed.events.first().cloned() else {
        return Err(ShopError::UnexpectedEvent("purchase"));
    };
    Ok(Purchase {
        executed,
        event,
        projected,
    })
}

/// Whom an order for `user`'s own account delivers to when no update shows their current
/// username (the HTTP API): the username their profile holds now, which the bot keeps current
/// from every update it sees (`ProfileUpdated`). Recorded on the order, never looked up again.
pub async fn own_account(shop: &Shop, user: UserId) -> Result<Recipient, ShopError> {
    let profile = shop
        .ledger
        .profile(user)
        .await?
        .ok_or(ShopError::UnknownUser)?;
    profile
        .username
        .as_deref()
        .and_then(|name| Username::parse(name).ok())
        .map(Recipient::Buyer)
        .ok_or(ShopError::NoUsername)
}

/// The customer price of `stars` in the ledger currency.
pub fn quote(shop: &Shop, stars: Stars) -> Result<Amount, ShopError> {
    shop.pricing
        .quote(stars)
        .map_err(|source| ShopError::Pricing {
            stars: stars.get(),
            source,
        })
}
