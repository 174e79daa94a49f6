//! Verifying the whole log: the hash chain and every ledger invariant, in one pass.
//!
//! Feed events in position order to [`LogAudit::check`] (page by page, so memory stays flat
//! in the number of events), then [`LogAudit::finish`]. Each finding names the position where
//! the log stops being sound. This is what `starledger demo` and, later, `audit verify` run.

use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;

use crate::account::Account;
use crate::chain::{ChainBreak, ChainVerifier, Hash};
use crate::commands::decode;
use crate::events::AccountEvent;
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
}

/// What an audit found.
#[derive(Debug, Clone)]
pub struct AuditReport {
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

    pub fn check(&mut self, recorded: &RecordedEvent) {
        self.events += 1;
        // After the first break every later link is suspect; report the break once.
        if !self.chain_broken {
            if let Err(chain_break) = self.chain.check(recorded) {
                self.chain_broken = true;
                self.report(chain_break.into());
            }
        }
        let event = match decode(recorded) {
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

        let account = self.accounts.entry(recorded.stream_id.clone()).or_default();
        if let AccountEvent::PurchaseCompleted(e) = &event {
            resolved_twice_check(account, &e.purchase_id)
        } else if let AccountEvent::PurchaseFailed(e) = &event {
            resolved_twice_check(account, &e.purchase_id)
        } else {
            Ok(())
        }
        .unwrap_or_else(|()| {
            self.findings.push(Finding::ReservationResolvedTwice {
                position: recorded.position,
            })
        });
        let account = self.accounts.entry(recorded.stream_id.clone()).or_default();
        account.evolve(&event);
        if account.available < Decimal::ZERO || account.reserved < Decimal::ZERO {
            let reason = format!(
                "available {}, reserved {}",
                account.available, account.reserved
            );
            self.report(Finding::Invariant {
                stream: recorded.stream_id.clone(),
                position: recorded.position,
                reason,
            });
        }
    }

    pub fn finish(mut self) -> AuditReport {
        let head_position = self.chain.last_position();
        for (stream, account) in &self.accounts {
            if let Err(violation) = account.check_invariants() {
                let finding = Finding::Invariant {
                    stream: stream.clone(),
                    position: head_position,
                    reason: violation.to_string(),
                };
                if self.findings.len() < MAX_FINDINGS {
                    self.findings.push(finding);
                }
            }
        }
        let totals = self.trial.totals();
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

fn resolved_twice_check(account: &Account, purchase_id: &crate::ids::PurchaseId) -> Result<(), ()> {
    match account.purchases.get(purchase_id) {
        Some(purchase) if !purchase.status.is_open() => Err(()),
        _ => Ok(()),
    }
}
