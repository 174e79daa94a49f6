//! What each event does to the read models: a pure fold over rows, no I/O.
//!
//! A projector hands a page of events and the rows those events touch (loaded beforehand) to
//! [`Page::apply`], then writes back whatever the page changed. The same fold, run from an
//! empty [`Page`] over the whole log, is the "fresh in-memory replay" that `audit verify`
//! compares the tables with.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use starledger_ledger::events::AccountEvent;
use starledger_ledger::postings::LedgerAccount;
use uuid::Uuid;

use crate::rows::{BalanceRow, TransactionKind, TransactionRow, UserRow};

/// The read models a projector maintains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Users,
    Balances,
    Transactions,
}

impl Table {
    pub const ALL: [Table; 3] = [Table::Users, Table::Balances, Table::Transactions];

    /// The projector's name, which is also its live table's name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Users => "users",
            Table::Balances => "balances",
            Table::Transactions => "transactions",
        }
    }

    pub fn parse(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// The provider's facts as an object for readers (the text the event keeps, if it is not one).
fn facts(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// Which of a customer's balances a posting moves.
enum Part {
    Available,
    Reserved,
    Debt,
}

/// One decoded event with the envelope fields projections need.
#[derive(Debug, Clone)]
pub struct Projected {
    pub position: u64,
    pub user_id: i64,
    pub recorded_at: DateTime<Utc>,
    pub event: AccountEvent,
}

/// The rows a page of events touches, keyed as in their tables. `BTreeMap`s so that writes
/// happen in key order (stable lock order, comparable output).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    pub users: BTreeMap<i64, UserRow>,
    pub balances: BTreeMap<(i64, String), BalanceRow>,
    pub transactions: BTreeMap<Uuid, TransactionRow>,
}

/// What must be loaded before a page can be folded: rows that the page's events update but
/// that the page itself does not create.
#[derive(Debug, Default)]
pub struct Needs {
    /// Users whose profile an event changes.
    pub users: Vec<i64>,
    pub balances: Vec<i64>,
    pub transactions: Vec<Uuid>,
}

/// The `transactions` row an event creates or changes: the key the fold uses (and what the
/// auditors' sliced replay splits by).
pub(crate) fn transaction_row(event: &AccountEvent) -> Option<Uuid> {
    transaction_id(event).map(|(id, _)| id)
}

/// The id of the transaction row an event creates or updates, and whether it creates it.
fn transaction_id(event: &AccountEvent) -> Option<(Uuid, bool)> {
    use AccountEvent as E;
    match event {
        E::RechargeRequested(e) => Some((e.recharge_id.uuid(), true)),
        E::PurchaseRequested(e) => Some((e.purchase_id.uuid(), true)),
        E::BalanceAdjusted(e) => Some((e.adjustment_id.uuid(), true)),
        E::RechargeSettled(e) => Some((e.recharge_id.uuid(), false)),
        E::RechargeFailed(e) => Some((e.recharge_id.uuid(), false)),
        E::RechargeHeld(e) => Some((e.recharge_id.uuid(), false)),
        E::RechargeReviewRequired(e) => Some((e.recharge_id.uuid(), false)),
        E::RechargeReversed(e) => Some((e.recharge_id.uuid(), false)),
        E::FragmentOrderPlaced(e) => Some((e.purchase_id.uuid(), false)),
        E::FragmentOrderSent(e) => Some((e.purchase_id.uuid(), false)),
        E::PurchaseCompleted(e) => Some((e.purchase_id.uuid(), false)),
        E::PurchaseFailed(e) => Some((e.purchase_id.uuid(), false)),
        E::UserRegistered(_) | E::ProfileUpdated(_) => None,
    }
}

impl Needs {
    pub fn of(table: Table, events: &[Projected]) -> Needs {
        let mut needs = Needs::default();
        match table {
            Table::Users => {
                let mut registered = HashSet::new();
                let mut wanted = HashSet::new();
                for projected in events {
                    match &projected.event {
                        AccountEvent::UserRegistered(e) => {
                            registered.insert(e.user_id.get());
                        }
                        AccountEvent::ProfileUpdated(_)
                            if !registered.contains(&projected.user_id) =>
                        {
                            wanted.insert(projected.user_id);
                        }
                        _ => {}
                    }
                }
                needs.users = wanted.into_iter().collect();
                needs.users.sort_unstable();
            }
            Table::Balances => {
                let users: HashSet<i64> = events
                    .iter()
                    .filter(|p| !p.event.postings().is_empty())
                    .map(|p| p.user_id)
                    .collect();
                needs.balances = users.into_iter().collect();
                needs.balances.sort_unstable();
            }
            Table::Transactions => {
                let mut created = HashSet::new();
                let mut wanted = HashSet::new();
                for projected in events {
                    if let Some((id, creates)) = transaction_id(&projected.event) {
                        if creates {
                            created.insert(id);
                        } else if !created.contains(&id) {
                            wanted.insert(id);
                        }
                    }
                }
                needs.transactions = wanted.into_iter().collect();
                needs.transactions.sort_unstable();
            }
        }
        needs
    }
}

impl Page {
    /// Applies one event to the rows of `table`. Rows the event updates must already be in
    /// the page (see [`Needs`]); a missing one means the log and the table disagree, and the
    /// event is skipped for that table rather than inventing a row (audit verify reports it).
    pub fn apply(&mut self, table: Table, projected: &Projected) {
        match table {
            Table::Users => self.apply_user(projected),
            Table::Balances => self.apply_balance(projected),
            Table::Transactions => self.apply_transaction(projected),
        }
    }

    fn apply_user(&mut self, p: &Projected) {
        match &p.event {
            AccountEvent::UserRegistered(e) => {
                self.users.insert(
                    e.user_id.get(),
                    UserRow {
                        user_id: e.user_id.get(),
                        username: e.username.clone(),
                        language: e.language.clone(),
                        currency: e.currency.to_string(),
                        registered_at: p.recorded_at,
                        position: p.position,
                    },
                );
            }
            AccountEvent::ProfileUpdated(e) => {
                if let Some(row) = self.users.get_mut(&p.user_id) {
                    row.username = e.username.clone();
                    row.language = e.language.clone();
                    row.position = p.position;
                }
            }
            _ => {}
        }
    }

    fn apply_balance(&mut self, p: &Projected) {
        for posting in p.event.postings() {
            let (owner, part) = match posting.account {
                LedgerAccount::CustomerAvailable(owner) => (owner, Part::Available),
                LedgerAccount::CustomerReserved(owner) => (owner, Part::Reserved),
                LedgerAccount::CustomerDebt(owner) => (owner, Part::Debt),
                _ => continue,
            };
            let key = (owner.get(), posting.currency.to_string());
            let row = self.balances.entry(key).or_insert_with(|| BalanceRow {
                user_id: owner.get(),
                currency: posting.currency.to_string(),
                available: Decimal::ZERO,
                reserved: Decimal::ZERO,
                debt: Decimal::ZERO,
                updated_at: p.recorded_at,
                position: p.position,
                no_money_events: false,
            });
            match part {
                Part::Available => row.available += posting.amount,
                Part::Reserved => row.reserved += posting.amount,
                // The debt account is negative while the customer owes: the row keeps what
                // is owed, as a positive number.
                Part::Debt => row.debt -= posting.amount,
            }
            row.updated_at = p.recorded_at;
            row.position = p.position;
        }
    }

    fn apply_transaction(&mut self, p: &Projected) {
        use AccountEvent as E;
        let new_row = |id: Uuid,
                       kind,
                       status: &str,
                       amount,
                       currency: String,
                       description,
                       external_id,
                       metadata| {
            TransactionRow {
                id,
                user_id: p.user_id,
                kind,
                status: status.to_owned(),
                amount,
                currency,
                description,
                external_id,
                metadata,
                created_at: p.recorded_at,
                updated_at: p.recorded_at,
                created_position: p.position,
                position: p.position,
            }
        };
        let row = match &p.event {
            E::UserRegistered(_) | E::ProfileUpdated(_) => return,
            E::RechargeRequested(e) => {
                let row = new_row(
                    e.recharge_id.uuid(),
                    TransactionKind::Recharge,
                    "pending",
                    e.amount.value(),
                    e.currency.to_string(),
                    Some(format!("Top-up of {} {}", e.amount, e.currency)),
                    Some(e.invoice.uuid.clone()),
                    json!({"invoice_url": e.invoice.url, "expires_at": e.invoice.expires_at, "requested": e.amount}),
                );
                self.transactions.insert(row.id, row);
                return;
            }
            E::PurchaseRequested(e) => {
                let recipient = e.recipient.as_ref().map(|r| r.to_string());
                let description = match &recipient {
                    Some(to) => format!("{} stars for {to}", e.stars.get()),
                    None => format!("{} stars", e.stars.get()),
                };
                let row = new_row(
                    e.purchase_id.uuid(),
                    TransactionKind::Purchase,
                    "reserved",
                    e.price.value(),
                    e.currency.to_string(),
                    Some(description),
                    None,
                    json!({
                        "stars": e.stars.get(),
                        "recipient": recipient,
                        "deliver_to": e.deliver_to.as_ref().map(|r| r.to_string()),
                    }),
                );
                self.transactions.insert(row.id, row);
                return;
            }
            E::BalanceAdjusted(e) => {
                let row = new_row(
                    e.adjustment_id.uuid(),
                    TransactionKind::Adjustment,
                    "completed",
                    e.amount.value(),
                    e.currency.to_string(),
                    Some(e.reason.clone()),
                    None,
                    json!({"admin": e.admin}),
                );
                self.transactions.insert(row.id, row);
                return;
            }
            _ => {
                match transaction_id(&p.event).and_then(|(id, _)| self.transactions.get_mut(&id)) {
                    Some(row) => row,
                    None => return,
                }
            }
        };
        let note = |row: &mut TransactionRow, key: &str, value: Value| {
            if let Value::Object(map) = &mut row.metadata {
                map.insert(key.to_owned(), value);
            }
        };
        match &p.event {
            E::RechargeSettled(e) => {
                row.status = if e.partial { "partial" } else { "completed" }.into();
                row.amount = e.credited.value();
                note(row, "provider_status", json!(e.status));
                note(row, "txid", json!(e.txid));
                if !e.debt_repaid.is_zero() {
                    note(row, "debt_repaid", json!(e.debt_repaid.to_string()));
                }
                if let Some(resolution) = &e.resolution {
                    note(row, "resolution", json!(resolution));
                }
            }
            E::RechargeFailed(e) => {
                row.status = "failed".into();
                note(row, "reason", json!(e.reason));
            }
            E::RechargeHeld(e) => {
                row.status = "on_hold".into();
                note(row, "provider_status", json!(e.provider_status));
                note(row, "facts", facts(&e.facts));
            }
            E::RechargeReviewRequired(e) => {
                row.status = "needs_review".into();
                note(row, "provider_status", json!(e.provider_status));
                note(row, "review_reason", json!(e.reason));
                note(row, "review_detail", json!(e.detail));
                note(row, "facts", facts(&e.facts));
            }
            E::RechargeReversed(e) => {
                row.status = "reversed".into();
                note(row, "provider_status", json!(e.provider_status));
                note(row, "reversed", json!(e.reversed));
                note(row, "debt", json!(e.debt.to_string()));
            }
            E::FragmentOrderPlaced(e) => {
                row.status = "ordered".into();
                row.external_id = Some(e.fragment_request_id.clone());
                note(row, "ton_amount", json!(e.ton_amount));
            }
            E::FragmentOrderSent(e) => {
                row.status = "sent".into();
                note(row, "wallet_tx", json!(e.wallet_tx));
            }
            E::PurchaseCompleted(_) => row.status = "completed".into(),
            E::PurchaseFailed(e) => {
                row.status = "refunded".into();
                note(row, "reason", json!(e.reason));
            }
            _ => return,
        }
        row.updated_at = p.recorded_at;
        row.position = p.position;
    }
}
