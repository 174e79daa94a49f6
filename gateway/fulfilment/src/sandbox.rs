//! The sandbox Fragment and TON chain (`FRAGMENT_MODE=sandbox`): operators rehearse the whole
//! purchase flow without money, and the demo and tests run the real worker against it.
//!
//! It sits behind the same two interfaces as the live Fragment client and TON API, so the
//! fulfilment worker runs exactly its production code: it opens orders, signs payments with
//! the shop wallet, records them before sending, sends them, looks for them on chain and
//! completes or refunds. The recipient's name decides what happens, so every path can be
//! rehearsed on demand:
//!
//! | recipient name contains | what the sandbox does |
//! |---|---|
//! | `notfound` | no such recipient → the purchase is refunded |
//! | `kyc` | Fragment wants KYC → refunded, and an operator alert |
//! | `expired` | the Fragment session is expired → orders pause, nothing refunded |
//! | `fail` | paid, then Fragment gives up (and refunds the wallet) → refunded |
//! | `hang` | paid, and Fragment never confirms → stays paid, an operator is alerted |
//! | anything else | paid and delivered |
//!
//! The chain is a wallet with a balance and a seqno that executes a message exactly as a
//! wallet contract does: only with the current seqno, only before its deadline, once. Orders
//! and the chain live in this process's memory. "Now" comes from a [`WallClock`] (the system
//! clock unless [`SandboxFragment::with_clock`] says otherwise), so a test can share one clock
//! between the sandbox and the worker and move both past a deadline without sleeping.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use starledger_ledger::events::Stars;
use starledger_ledger::ids::Username;

use super::body;
use super::market::{MarketError, MarketOrder, OrderState, PaymentRequest, Recipient, StarsMarket};
use super::ton::{
    ChainError, ChainTransaction, Nanotons, SignedTransfer, TonChain, TransferMessage,
    WalletAccount, WalletState,
};
use starledger_outbound::resilience::{SystemWallClock, WallClock};

/// What a sandbox order will do once paid.
/// Where the sandbox has orders paid: one address, as Fragment's, with each order named by
/// its payment's comment.
pub const SANDBOX_PAYMENT_ADDRESS: &str =
    "0:5a4d5f0b7e2c9a1d3f6b8e0c2a4d6f8b1e3c5a7d9f0b2e4c6a8d0f1b3e5c7a9d";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Deliver,
    Fail,
    Hang,
}

#[derive(Debug, Clone)]
struct SandboxOrder {
    cost: Nanotons,
    /// The comment its payment carries, as Fragment's name the order: how the chain tells
    /// which order a transfer pays.
    reference: String,
    behaviour: Behaviour,
    paid: bool,
    /// Like the cautious reading of Fragment: a paid order is delivered only once the
    /// payment is confirmed.
    confirmed: bool,
}

#[derive(Debug, Default)]
struct Ledger {
    next_order: u64,
    orders: HashMap<String, SandboxOrder>,
    balance: Nanotons,
    seqno: u32,
    transactions: Vec<ChainTransaction>,
    /// The messages the wallet executed, as broadcast.
    executed: HashSet<String>,
}

/// The sandbox: a [`StarsMarket`] and a [`TonChain`] sharing one in-memory world.
pub struct SandboxFragment {
    price_per_star: Decimal,
    world: Mutex<Ledger>,
    /// Names this sandbox's orders apart from every other's: a request id, like Fragment's,
    /// must never come back (the transactions table keeps them unique), and another process
    /// or a restart starts counting again.
    run: String,
    /// What time it is to Fragment (a link's validity) and to the chain (a message's
    /// deadline, a transaction's time).
    clock: Arc<dyn WallClock>,
}

impl SandboxFragment {
    /// A sandbox selling stars at `price_per_star` TON, with a wallet holding `balance`.
    pub fn new(price_per_star: Decimal, balance: Nanotons) -> Self {
        Self::with_clock(price_per_star, balance, Arc::new(SystemWallClock))
    }

    /// The same, reading the time from `clock` (tests share theirs with the worker).
    pub fn with_clock(
        price_per_star: Decimal,
        balance: Nanotons,
        clock: Arc<dyn WallClock>,
    ) -> Self {
        Self {
            price_per_star,
            world: Mutex::new(Ledger {
                balance,
                ..Ledger::default()
            }),
            run: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
            clock,
        }
    }

    fn world(&self) -> std::sync::MutexGuard<'_, Ledger> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.world
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sets the wallet's balance (operators rehearsing a low balance, tests).
    pub fn set_balance(&self, balance: Nanotons) {
        self.world().balance = balance;
    }

    /// How many messages the wallet has executed (every one a payment).
    pub fn payments_executed(&self) -> usize {
        self.world().transactions.len()
    }
}

fn behaviour_of(name: &str) -> Result<Behaviour, MarketError> {
    let name = name.to_ascii_lowercase();
    if name.contains("notfound") {
        Err(MarketError::RecipientNotFound(format!(
            "sandbox: @{name} cannot receive stars"
        )))
    } else if name.contains("expired") {
        Err(MarketError::SessionExpired(
            "sandbox: the Fragment session expired".into(),
        ))
    } else if name.contains("fail") {
        Ok(Behaviour::Fail)
    } else if name.contains("hang") {
        Ok(Behaviour::Hang)
    } else {
        Ok(Behaviour::Deliver)
    }
}

fn hex_digest(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

#[async_trait]
impl StarsMarket for SandboxFragment {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    async fn find_recipient(
        &self,
        username: &Username,
        _stars: Stars,
    ) -> Result<Recipient, MarketError> {
        behaviour_of(username.as_str())?;
        Ok(Recipient {
            username: username.clone(),
            recipient_id: format!("sandbox-{}", username.as_str()),
            name: Some(username.to_string()),
        })
    }

    async fn open_order(
        &self,
        recipient: &Recipient,
        stars: Stars,
    ) -> Result<MarketOrder, MarketError> {
        let behaviour = behaviour_of(recipient.username.as_str())?;
        if recipient
            .username
            .as_str()
            .to_ascii_lowercase()
            .contains("kyc")
        {
            return Err(MarketError::KycRequired(
                "sandbox: verify the shop's account to keep buying".into(),
            ));
        }
        let cost = Nanotons::from_ton(self.price_per_star * Decimal::from(stars.get()))
            .ok_or_else(|| MarketError::BadResponse("sandbox price out of range".into()))?;
        let mut world = self.world();
        world.next_order += 1;
        let request_id = format!("sandbox-req-{}-{}", self.run, world.next_order);
        let reference = body::comment_payload(&format!(
            "{} Telegram Stars (sandbox)\n\nRef#{request_id}",
            stars.get()
        ))
        .map_err(|e| MarketError::BadResponse(e.to_string()))?;
        world.orders.insert(
            request_id.clone(),
            SandboxOrder {
                cost,
                reference,
                behaviour,
                paid: false,
                confirmed: false,
            },
        );
        Ok(MarketOrder { request_id, cost })
    }

    async fn payment_request(
        &self,
        request_id: &str,
        _wallet: &WalletAccount,
    ) -> Result<PaymentRequest, MarketError> {
        let world = self.world();
        let order = world
            .orders
            .get(request_id)
            .ok_or_else(|| MarketError::Refused(format!("sandbox: no order {request_id}")))?;
        if order.paid {
            return Err(MarketError::Refused(format!(
                "sandbox: order {request_id} is already paid"
            )));
        }
        Ok(PaymentRequest {
            messages: vec![TransferMessage {
                destination: SANDBOX_PAYMENT_ADDRESS.to_owned(),
                amount: order.cost,
                payload: Some(order.reference.clone()),
            }],
            valid_until: self.clock.now() + chrono::Duration::minutes(15),
        })
    }

    async fn confirm_payment(
        &self,
        request_id: &str,
        _wallet: &WalletAccount,
        message: &str,
    ) -> Result<(), MarketError> {
        let mut world = self.world();
        let paid_by_it = world.executed.contains(message);
        let order = world
            .orders
            .get_mut(request_id)
            .ok_or_else(|| MarketError::Refused(format!("sandbox: no order {request_id}")))?;
        if !order.paid || !paid_by_it {
            return Err(MarketError::Refused(format!(
                "sandbox: order {request_id} was not paid by that message"
            )));
        }
        order.confirmed = true;
        Ok(())
    }

    async fn order_state(&self, request_id: &str) -> Result<OrderState, MarketError> {
        let world = self.world();
        let order = world
            .orders
            .get(request_id)
            .ok_or_else(|| MarketError::Refused(format!("sandbox: no order {request_id}")))?;
        Ok(match (order.confirmed, order.behaviour) {
            (false, _) | (true, Behaviour::Hang) => OrderState::Pending,
            (true, Behaviour::Deliver) => OrderState::Delivered,
            (true, Behaviour::Fail) => {
                OrderState::Failed("sandbox: Fragment could not deliver the stars".into())
            }
        })
    }
}

#[async_trait]
impl TonChain for SandboxFragment {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    async fn wallet_state(&self, _address: &str) -> Result<WalletState, ChainError> {
        let world = self.world();
        Ok(WalletState {
            balance: world.balance,
            seqno: world.seqno,
            deployed: world.seqno > 0,
        })
    }

    async fn broadcast(&self, transfer: &SignedTransfer) -> Result<(), ChainError> {
        let mut world = self.world();
        if world
            .transactions
            .iter()
            .any(|t| t.message_hash == transfer.message_hash)
        {
            return Ok(());
        }
        if transfer.transfers.is_empty() {
            return Err(ChainError::Refused(
                "sandbox: a message that pays nothing".into(),
            ));
        }
        let transfer = transfer.clone();
        if transfer.seqno != world.seqno || self.clock.now() > transfer.valid_until {
            // A wallet contract refuses these; a real node drops them without a trace.
            return Err(ChainError::Refused(format!(
                "sandbox: message with seqno {} not accepted (wallet at {})",
                transfer.seqno, world.seqno
            )));
        }
        let total = transfer
            .total()
            .ok_or_else(|| ChainError::Refused("sandbox: amount overflow".into()))?;
        if total > world.balance {
            return Err(ChainError::Refused("sandbox: insufficient balance".into()));
        }
        world.balance = Nanotons(world.balance.0 - total.0);
        world.seqno += 1;
        let refunds: Vec<Nanotons> = transfer
            .transfers
            .iter()
            .filter_map(|t| {
                let order = world.orders.values_mut().find(|o| {
                    t.destination == SANDBOX_PAYMENT_ADDRESS
                        && t.payload.as_deref() == Some(o.reference.as_str())
                        && !o.paid
                        && o.cost == t.amount
                })?;
                order.paid = true;
                (order.behaviour == Behaviour::Fail).then_some(order.cost)
            })
            .collect();
        for refund in refunds {
            world.balance = world.balance.checked_add(refund).unwrap_or(world.balance);
        }
        let lt = world.transactions.len() as u64 + 1;
        let hash = hex_digest(&[transfer.message.as_bytes(), &lt.to_be_bytes()]);
        world.executed.insert(transfer.message.clone());
        world.transactions.push(ChainTransaction {
            hash,
            lt,
            at: self.clock.now(),
            message_hash: transfer.message_hash.clone(),
            transfers: transfer.transfers,
        });
        Ok(())
    }

    async fn find_transaction(
        &self,
        _address: &str,
        message_hash: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<ChainTransaction>, ChainError> {
        Ok(self
            .world()
            .transactions
            .iter()
            .find(|t| t.message_hash == message_hash && t.at >= since)
            .cloned())
    }
}
