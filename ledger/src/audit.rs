//! Verifying the whole log: the hash chain and every ledger invariant, in one pass.
//!
//! Feed events in position order to [`LogAudit::check`] (page by page, so memory stays flat
//! in the number of events), then [`LogAudit::finish`]. Each finding names the position where
//! the log stops being sound. This is what `starledger demo` runs; `audit verify` runs the
//! same checks through [`crate::parallel_audit`] (the hashing on worker threads), and can
//! start from a verified checkpoint instead of the first event ([`LogAudit::resume`],
//! [`crate::checkpoint`]).

use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;

use crate::account::Account;
use crate::chain::{ChainBreak, ChainVerifier, Hash, PageLinks};
use crate::commands::decode;
use crate::events::{AccountEvent, DecodeError};
use crate::money::Currency;
use crate::postings::{unbalanced_currencies, TrialBalance};
use crate::store::RecordedEvent;

/// One thing wrong with the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Finding {
    #[error(transparent)]
    Chain(#[from] ChainBreak),
    #[error("event at position {position} cannot be decoded: {reason}")]
    Undecodable { position: u64, reason: String },
    #[error("postings of the event at position {position} do not sum to zero")]
    Unbalanced { position: u64 },
    #[error("{stream} breaks an invariant at position {position}: {reason}")]
    Invariant {
        stream: String,
        position: u64,
        reason: String,
    },
    #[error("purchase resolved a second time at position {position}")]
    ReservationResolvedTwice { position: u64 },
    #[error("trial balance is {total} {currency}, not zero")]
    TrialBalance { currency: Currency, total: Decimal },
    #[error("the log was rewritten up to position {position} after it was verified: the event there has hash {found}, the verified checkpoint recorded {recorded}")]
    CheckpointRewritten {
        position: u64,
        recorded: Hash,
        found: Hash,
    },
    #[error("the log ends at position {head}, before position {position} where it was verified: events were removed")]
    CheckpointBeyondLog { position: u64, head: u64 },
}

impl Finding {
    /// The position a finding is about (`None`: the whole log, as the trial balance).
    pub fn position(&self) -> Option<u64> {
        match self {
            Finding::Chain(ChainBreak::Gap { found, .. }) => Some(*found),
            Finding::Chain(ChainBreak::BrokenLink { position })
            | Finding::Chain(ChainBreak::Altered { position })
            | Finding::Undecodable { position, .. }
            | Finding::Unbalanced { position }
            | Finding::Invariant { position, .. }
            | Finding::ReservationResolvedTwice { position }
            | Finding::CheckpointRewritten { position, .. } => Some(*position),
            Finding::TrialBalance { .. } | Finding::CheckpointBeyondLog { .. } => None,
        }
    }
}

/// What an audit found.
///
/// After [`LogAudit::resume`], `events` and `trial_balance` cover the events checked in this
/// run only, while `totals` (the trial balance per currency) and `accounts` cover the whole
/// log: the checkpoint's and this run's. Accounts restored from a checkpoint hold what the
/// invariants read (profile, balances, purchases) but no recharges or adjustments.
#[derive(Debug, Clone)]
pub struct AuditReport {
    /// Events checked (by this run).
    pub events: u64,
    pub head_position: u64,
    pub head_hash: Hash,
    pub trial_balance: TrialBalance,
    pub totals: BTreeMap<Currency, Decimal>,
    pub accounts: HashMap<String, Account>,
    pub findings: Vec<Finding>,
}

impl AuditReport {
    pub fn is_sound(&self) -> bool {
        self.findings.is_empty()
    }
}

/// The state of an audit in progress.
#[derive(Default)]
pub struct LogAudit {
    chain: ChainVerifier,
    chain_broken: bool,
    events: u64,
    trial: TrialBalance,
    /// Trial-balance totals carried over from a checkpoint.
    carried: BTreeMap<Currency, Decimal>,
    accounts: HashMap<String, Account>,
    findings: Vec<Finding>,
}

/// Findings past this many are counted but not kept (a wrecked log would otherwise fill memory).
const MAX_FINDINGS: usize = 1_000;

impl LogAudit {
    fn report(&mut self, finding: Finding) {
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(finding);
        }
    }

    /// Goes on from a verified checkpoint: the event at `position` had `hash`, and the
    /// trial-balance totals and accounts stood as given there.
    pub fn resume(
        position: u64,
        hash: Hash,
        totals: BTreeMap<Currency, Decimal>,
        accounts: HashMap<String, Account>,
    ) -> Self {
        Self {
            chain: ChainVerifier::resume(position, hash),
            carried: totals,
            accounts,
            ..Self::default()
        }
    }

    /// Adds a finding made outside the event-by-event checks (a checkpoint that no longer
    /// matches the log).
    pub fn add_finding(&mut self, finding: Finding) {
        self.report(finding);
    }

    pub fn check(&mut self, recorded: &RecordedEvent) {
        // After the first break every later link is suspect; report the break once.
        if !self.chain_broken {
            if let Err(chain_break) = self.chain.check(recorded) {
                self.chain_broken = true;
                self.report(chain_break.into());
            }
        }
        self.fold(recorded, decode(recorded));
    }

    /// Joins a page whose rows were hash-checked elsewhere ([`crate::chain::check_links`]):
    /// after it, [`LogAudit::fold`] each of its rows.
    pub fn join(&mut self, links: &PageLinks) {
        if !self.chain_broken {
            if let Err(chain_break) = self.chain.join(links) {
                self.chain_broken = true;
                self.report(chain_break.into());
            }
        }
    }

    /// Everything [`LogAudit::check`] does but the chain: postings, the trial balance and
    /// the account invariants, given the event as decoded (elsewhere, maybe).
    pub fn fold(&mut self, recorded: &RecordedEvent, decoded: Result<AccountEvent, DecodeError>) {
        self.events += 1;
        let event = match decoded {
            Ok(event) => event,
            Err(error) => {
                self.report(Finding::Undecodable {
                    position: recorded.position,
                    reason: error.to_string(),
                });
                return;
            }
        };
        if !unbalanced_currencies(event.postings()).is_empty() {
            self.report(Finding::Unbalanced {
                position: recorded.position,
            });
        }
        self.trial.apply(event.postings());

        if !self.accounts.contains_key(&recorded.stream_id) {
            self.accounts
                .insert(recorded.stream_id.clone(), Account::default());
        }
        let Some(account) = self.accounts.get_mut(&recorded.stream_id) else {
            return;
        };
        let resolved = match &event {
            AccountEvent::PurchaseCompleted(e) => Some(e.purchase_id),
            AccountEvent::PurchaseFailed(e) => Some(e.purchase_id),
            _ => None,
        };
        let resolved_twice = resolved
            .and_then(|id| account.purchases.get(&id))
            .is_some_and(|purchase| !purchase.status.is_open());
        account.evolve(&event);
        // The same typed invariants the command handler checks before every append.
        let broken = account.check_invariants().err();
        if resolved_twice {
            self.report(Finding::ReservationResolvedTwice {
                position: recorded.position,
            });
        }
        if let Some(violation) = broken {
            self.report(Finding::Invariant {
                stream: recorded.stream_id.clone(),
                position: recorded.position,
                reason: violation.to_string(),
            });
        }
    }

    pub fn finish(mut self) -> AuditReport {
        let head_position = self.chain.last_position();
        // Every account was checked after each of its events, its last one included, so its
        // state at the head has been judged already.
        let mut totals = std::mem::take(&mut self.carried);
        for (currency, total) in self.trial.totals() {
            *totals.entry(currency).or_default() += total;
        }
        // In position order (a page's chain break is joined before its rows are folded, so
        // the order found is not always the log's); whole-log findings last.
        self.findings
            .sort_by_key(|finding| finding.position().unwrap_or(u64::MAX));
        for (currency, total) in &totals {
            if !total.is_zero() {
                self.findings.push(Finding::TrialBalance {
                    currency: currency.clone(),
                    total: *total,
                });
            }
        }
        AuditReport {
            events: self.events,
            head_position,
            head_hash: self.chain.last_hash(),
            trial_balance: self.trial,
            totals,
            accounts: self.accounts,
            findings: self.findings,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use super::*;
    use crate::account::{decide, AccountCommand};
    use crate::events::{Invoice, PaidStatus, Stars};
    use crate::ids::{
        EventId, IdempotencyKey, PurchaseId, RechargeId, Recipient, UserId, Username,
    };
    use crate::money::{Amount, Currency};
    use crate::postings::{LedgerAccount, Posting};
    use crate::store::plan::{plan_batch, BatchFacts};
    use crate::store::{AppendRequest, ExpectedVersion, NewEvent};

    /// A chained log of these events on one stream, as the store would record them.
    fn log(events: &[AccountEvent]) -> Vec<RecordedEvent> {
        let request = AppendRequest {
            stream_id: "account-7".into(),
            expected: ExpectedVersion::Any,
            events: events
                .iter()
                .map(|e| NewEvent {
                    event_id: EventId(uuid::Uuid::new_v4()),
                    event_type: e.event_type().into(),
                    schema_version: e.schema_version(),
                    data: e.to_data(),
                    metadata: json!({"actor": "system"}),
                })
                .collect(),
        };
        let plan = plan_batch(
            BatchFacts::default(),
            &[request],
            crate::store::plan::to_micros(Utc::now()),
        );
        plan.rows
    }

    fn history() -> Vec<AccountEvent> {
        let user = UserId::new(7).unwrap();
        let key = |k: &str| IdempotencyKey::parse(k).unwrap();
        let recharge_id = RechargeId::derive(user, &key("r"));
        let purchase_id = PurchaseId::derive(user, &key("p"));
        let commands = [
            AccountCommand::Register {
                username: None,
                language: None,
                currency: Currency::ton(),
            },
            AccountCommand::RequestRecharge {
                recharge_id,
                amount: Amount::parse("10").unwrap(),
                currency: Currency::ton(),
                invoice: Invoice {
                    uuid: "i".into(),
                    url: "https://pay.example/i".into(),
                    expires_at: Utc::now(),
                },
            },
            AccountCommand::SettleRecharge {
                recharge_id,
                status: PaidStatus::Paid,
                paid: Amount::parse("10").unwrap(),
                txid: None,
            },
            AccountCommand::RequestPurchase {
                purchase_id,
                stars: Stars::new(100).unwrap(),
                recipient: Recipient::Buyer(Username::parse("alice_01").unwrap()),
                price: Amount::parse("4").unwrap(),
            },
            AccountCommand::CompletePurchase { purchase_id },
        ];
        let mut account = Account::default();
        let mut events = Vec::new();
        for command in commands {
            for event in decide(user, &account, &command).unwrap() {
                account.evolve(&event);
                events.push(event);
            }
        }
        events
    }

    fn audit(events: &[RecordedEvent]) -> AuditReport {
        let mut audit = LogAudit::default();
        events.iter().for_each(|e| audit.check(e));
        audit.finish()
    }

    #[test]
    fn a_sound_history_has_no_findings() {
        let report = audit(&log(&history()));
        assert!(report.is_sound(), "{:?}", report.findings);
        assert_eq!(report.events, 5);
    }

    #[test]
    fn a_reservation_captured_twice_is_found_even_in_a_well_chained_log() {
        let mut events = history();
        events.push(events[4].clone());
        let report = audit(&log(&events));
        assert!(
            report
                .findings
                .contains(&Finding::ReservationResolvedTwice { position: 6 }),
            "{:?}",
            report.findings
        );
        assert!(
            report
                .findings
                .iter()
                .any(|f| matches!(f, Finding::Invariant { position: 6, .. })),
            "the second capture drives reserved negative: {:?}",
            report.findings
        );
    }

    #[test]
    fn money_made_available_while_a_debt_is_open_is_found() {
        let user = UserId::new(7).unwrap();
        let mut events = history();
        // A refund of 10 after 4 was spent: 6 back from available, 4 owed…
        let recharge_id = RechargeId::derive(user, &IdempotencyKey::parse("r").unwrap());
        let ton = Currency::ton();
        events.push(AccountEvent::RechargeReversed(
            crate::events::RechargeReversed {
                recharge_id,
                provider_status: "refund_paid".into(),
                reversed: Amount::parse("10").unwrap(),
                from_available: Decimal::from(6),
                debt: Decimal::from(4),
                currency: ton.clone(),
                postings: vec![
                    Posting {
                        account: LedgerAccount::CustomerAvailable(user),
                        currency: ton.clone(),
                        amount: Decimal::from(-6),
                    },
                    Posting {
                        account: LedgerAccount::CustomerDebt(user),
                        currency: ton.clone(),
                        amount: Decimal::from(-4),
                    },
                    Posting {
                        account: LedgerAccount::ClearingHeleket,
                        currency: ton.clone(),
                        amount: Decimal::from(10),
                    },
                ],
            },
        ));
        assert!(audit(&log(&events)).is_sound());
        // …then a credit written straight to available, as `decide` never would: the debt
        // must be paid first.
        events.push(AccountEvent::BalanceAdjusted(
            crate::events::BalanceAdjusted {
                adjustment_id: crate::ids::AdjustmentId::derive(
                    user,
                    &IdempotencyKey::parse("a").unwrap(),
                ),
                amount: crate::money::SignedAmount::parse("1").unwrap(),
                currency: ton.clone(),
                admin: "mallory".into(),
                reason: "bypasses the debt".into(),
                postings: crate::postings::transfer(
                    LedgerAccount::EquityAdjustments,
                    LedgerAccount::CustomerAvailable(user),
                    Amount::parse("1").unwrap(),
                    &ton,
                ),
            },
        ));
        let report = audit(&log(&events));
        assert!(
            report.findings.iter().any(|f| matches!(
                f,
                Finding::Invariant { position: 7, reason, .. } if reason.contains("debt")
            )),
            "{:?}",
            report.findings
        );
    }

    #[test]
    fn unbalanced_postings_and_a_nonzero_trial_balance_are_found() {
        let mut events = history();
        if let AccountEvent::RechargeSettled(settled) = &mut events[2] {
            settled.postings.pop();
        }
        let report = audit(&log(&events));
        assert!(
            report
                .findings
                .contains(&Finding::Unbalanced { position: 3 }),
            "{:?}",
            report.findings
        );
        assert!(report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::TrialBalance { .. })));
    }
}
