//! The Stars order flow: the Stars menu, an offer (price and balance with Confirm and
//! Cancel, kept in the session), the confirm that reserves the price once, and what an old
//! or repeated button says instead of buying again.
//!
//! The purchase's idempotency key is the offer's token (`tg:{bot}:offer:{token}`, the update
//! that made the offer), so two presses of one Confirm, here or on two instances, reserve
//! once; an offer cancelled, replaced or expired buys nothing.
//!
//! An order for the buyer's own account delivers to the username Telegram shows for them in
//! the confirm press itself, and the order records it: not the name they registered with,
//! which they may have changed or given up (and someone else taken) since. A buyer without a
//! username is asked to set one or to buy as a gift.

use starledger_ledger::events::Stars;
use starledger_ledger::ids::{IdempotencyKey, PurchaseId, Recipient, Username};

use super::flows::{Answer, Outcome, Turn};
use super::keyboards;
use super::limits::Limit;
use super::session::Offer;
use starledger_shop::{self as shop, ShopError};

pub(super) fn buy_menu(turn: &Turn<'_>, recipient: Option<Username>) -> Outcome {
    let shown = recipient.as_ref().map(ToString::to_string);
    Answer::with(
        turn.texts.buy_prompt(shown.as_deref()),
        keyboards::buy_menu(turn.texts, recipient.as_ref()),
    )
    .into()
}

/// Prices an order and shows it with a confirm button; the offer waits in the session.
pub(super) async fn offer(turn: &Turn<'_>, stars: Stars, recipient: Option<Username>) -> Outcome {
    if let Err(refused) = turn.allow(Limit::Operations).await {
        return refused;
    }
    if let Err(error) = turn.ensure_registered().await {
        return turn.failure(&error).into();
    }
    let price = match shop::quote(&turn.state().shop, stars) {
        Ok(price) => price,
        Err(error) => return turn.failure(&error).into(),
    };
    let (available, _) = match turn.balance(None).await {
        Ok(balance) => balance,
        Err(error) => return turn.failure(&error).into(),
    };
    let own = match &recipient {
        Some(_) => None,
        None => match own_username(turn) {
            Some(name) => Some(name),
            None => return no_username(turn),
        },
    };
    let token = turn.origin_token();
    let mut session = turn.context.sessions.get(turn.user.get()).await;
    session.offer = Some(Offer {
        token,
        stars,
        recipient: recipient.clone(),
    });
    turn.context.sessions.put(turn.user.get(), &session).await;
    let shown = recipient.as_ref().map(ToString::to_string);
    let own = own.as_ref().map(ToString::to_string);
    Answer::with(
        turn.texts.offer(
            stars.get(),
            (shown.as_deref(), own.as_deref()),
            price.value(),
            available,
            turn.currency(),
        ),
        keyboards::confirm(turn.texts, token),
    )
    .into()
}

/// The confirm button: reserves the offer's price, once.
pub(super) async fn confirm(turn: &Turn<'_>, token: u64) -> Outcome {
    if let Err(refused) = turn.allow(Limit::Operations).await {
        return refused;
    }
    let Some(key) = turn.key(&format!("offer:{token}")) else {
        return Answer::text(turn.texts.unavailable()).into();
    };
    let mut session = turn.context.sessions.get(turn.user.get()).await;
    let Some(offer) = session.offer.clone().filter(|offer| offer.token == token) else {
        return already_placed_or_expired(turn, &key).await;
    };
    // Whom the Stars go to is fixed now, from this press: a gift to the name in the offer, or
    // the buyer's username as Telegram shows it in this very update.
    let recipient = match offer.recipient.clone() {
        Some(name) => Recipient::Gift(name),
        None => match own_username(turn) {
            Some(name) => Recipient::Buyer(name),
            None => return no_username(turn),
        },
    };
    // Counted only when an order is really placed: a dead button moves no money.
    if let Err(refused) = turn.allow(Limit::Payments).await {
        return refused;
    }
    match shop::purchase(
        &turn.state().shop,
        turn.user,
        offer.stars,
        recipient,
        key,
        &turn.state().deadline(),
    )
    .await
    {
        Ok(purchase) => {
            // Cleared only now: a confirm that failed on our side can be pressed again.
            session.offer = None;
            turn.context.sessions.put(turn.user.get(), &session).await;
            if purchase.executed.replayed {
                // Another press (here or on another instance) placed it first.
                let key = turn.key(&format!("offer:{token}"));
                if let Some(key) = key {
                    return already_placed_or_expired(turn, &key).await;
                }
            }
            let (available, reserved) = match turn.balance(Some(purchase.executed.position)).await {
                Ok(balance) => balance,
                Err(error) => return turn.failure(&error).into(),
            };
            let event = purchase.event;
            let shown = event.recipient.as_ref().map(ToString::to_string);
            let own = event.deliver_to.as_ref().map(ToString::to_string);
            Answer::text(turn.texts.placed(
                event.stars.get(),
                (shown.as_deref(), own.as_deref()),
                event.price.value(),
                available,
                reserved,
                turn.currency(),
            ))
            .into()
        }
        Err(error) => turn.failure(&error).into(),
    }
}

/// The buyer's username as this update shows it (Telegram sends the current one with every
/// update), if they have one.
fn own_username(turn: &Turn<'_>) -> Option<Username> {
    turn.from
        .username
        .as_deref()
        .and_then(|name| Username::parse(name).ok())
}

fn no_username(turn: &Turn<'_>) -> Outcome {
    Answer::with(
        turn.texts.no_username(),
        keyboards::gift_instead(turn.texts),
    )
    .into()
}

/// A confirm whose offer is not open: if it was placed, say so with its status; otherwise
/// it was cancelled, replaced or expired. Never buys.
async fn already_placed_or_expired(turn: &Turn<'_>, key: &IdempotencyKey) -> Outcome {
    let purchase = PurchaseId::derive(turn.user, key);
    match turn.state().read.transaction(purchase.uuid()).await {
        Ok(Some(row)) => Answer::text(turn.texts.already_placed(&row.status)).into(),
        Ok(None) => Answer::text(turn.texts.offer_expired()).into(),
        Err(error) => turn.failure(&ShopError::Read(error)).into(),
    }
}

pub(super) async fn cancel(turn: &Turn<'_>, token: u64) -> Outcome {
    let mut session = turn.context.sessions.get(turn.user.get()).await;
    if session
        .offer
        .as_ref()
        .is_some_and(|offer| offer.token == token)
    {
        session.offer = None;
        turn.context.sessions.put(turn.user.get(), &session).await;
        return Answer::text(turn.texts.cancelled()).into();
    }
    // Not the open offer: it was confirmed, replaced or expired; say which.
    match turn.key(&format!("offer:{token}")) {
        Some(key) => already_placed_or_expired(turn, &key).await,
        None => Answer::text(turn.texts.offer_expired()).into(),
    }
}
