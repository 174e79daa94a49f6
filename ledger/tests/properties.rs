//! Property tests over random command sequences: whatever users do, in whatever order, the
//! ledger invariants of DESIGN.md hold and replaying the log gives the same state.

use std::collections::HashMap;

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;
use starledger_ledger::account::{
    decide, Account, AccountCommand, PaymentReport, ReportedOutcome, ReviewDecision,
};
use starledger_ledger::commands::{CommandError, Ledger};
use starledger_ledger::events::{AccountEvent, Invoice, PaidStatus, Stars};
use starledger_ledger::ids::{
    AdjustmentId, IdempotencyKey, PurchaseId, RechargeId, Recipient, UserId, Username,
};
use starledger_ledger::money::{Amount, Currency, SignedAmount};
use starledger_ledger::postings::{unbalanced_currencies, LedgerAccount, TrialBalance};
use starledger_ledger::store::CommitMode;

/// A command in compact form: small ids so that sequences revisit the same recharges and
/// purchases (settling twice, completing after failing, …).
#[derive(Debug, Clone)]
enum Op {
    Register(u8),
    RequestRecharge(u8, u8, u32),
    Settle(u8, u8, u32, bool),
    FailRecharge(u8, u8),
    Purchase(u8, u8, u32),
    Complete(u8, u8),
    FailPurchase(u8, u8),
    Adjust(u8, u8, i32),
    /// A provider's report on a recharge: (user, recharge, kind, amount in cents, our coin?).
    Report(u8, u8, u8, u32, bool),
    /// An operator's decision on a recharge: credit these cents, or reject (0).
    Resolve(u8, u8, u32),
}

fn op() -> impl Strategy<Value = Op> {
    let user = 0u8..3;
    let id = 0u8..4;
    let cents = 1u32..5_000;
    prop_oneof![
        1 => user.clone().prop_map(Op::Register),
        3 => (user.clone(), id.clone(), cents.clone()).prop_map(|(u, r, a)| Op::RequestRecharge(u, r, a)),
        3 => (user.clone(), id.clone(), cents.clone(), any::<bool>()).prop_map(|(u, r, a, o)| Op::Settle(u, r, a, o)),
        1 => (user.clone(), id.clone()).prop_map(|(u, r)| Op::FailRecharge(u, r)),
        4 => (user.clone(), id.clone(), cents.clone()).prop_map(|(u, p, a)| Op::Purchase(u, p, a)),
        2 => (user.clone(), id.clone()).prop_map(|(u, p)| Op::Complete(u, p)),
        2 => (user.clone(), id.clone()).prop_map(|(u, p)| Op::FailPurchase(u, p)),
        1 => (user.clone(), id.clone(), -3_000i32..3_000).prop_map(|(u, a, v)| Op::Adjust(u, a, v)),
        4 => (user.clone(), id.clone(), 0u8..7, cents.clone(), any::<bool>())
            .prop_map(|(u, r, k, a, ours)| Op::Report(u, r, k, a, ours)),
        1 => (user, id, 0u32..5_000).prop_map(|(u, r, a)| Op::Resolve(u, r, a)),
    ]
}

fn user(index: u8) -> UserId {
    UserId::new(100 + i64::from(index)).unwrap()
}

fn key(kind: &str, id: u8) -> IdempotencyKey {
    IdempotencyKey::parse(&format!("{kind}-{id}")).unwrap()
}

fn cents(value: u32) -> Amount {
    Amount::new(Decimal::new(i64::from(value), 2)).unwrap()
}

/// The user an op is for, and the command it stands for.
fn command(op: &Op) -> Option<(UserId, AccountCommand)> {
    let (u, command) = match *op {
        Op::Register(u) => (
            u,
            AccountCommand::Register {
                username: None,
                language: None,
                currency: Currency::ton(),
            },
        ),
        Op::RequestRecharge(u, r, amount) => (
            u,
            AccountCommand::RequestRecharge {
                recharge_id: RechargeId::derive(user(u), &key("r", r)),
                amount: cents(amount),
                currency: Currency::ton(),
                invoice: Invoice {
                    uuid: format!("inv-{u}-{r}"),
                    url: "https://pay.example/x".into(),
                    expires_at: Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap(),
                },
            },
        ),
        Op::Settle(u, r, paid, over) => (
            u,
            AccountCommand::SettleRecharge {
                recharge_id: RechargeId::derive(user(u), &key("r", r)),
                status: if over {
                    PaidStatus::PaidOver
                } else {
                    PaidStatus::Paid
                },
                paid: cents(paid),
                txid: None,
            },
        ),
        Op::FailRecharge(u, r) => (
            u,
            AccountCommand::FailRecharge {
                recharge_id: RechargeId::derive(user(u), &key("r", r)),
                reason: "cancel".into(),
            },
        ),
        Op::Purchase(u, p, price) => (
            u,
            AccountCommand::RequestPurchase {
                purchase_id: PurchaseId::derive(user(u), &key("p", p)),
                stars: Stars::new(100).unwrap(),
                recipient: Recipient::Buyer(Username::parse("buyer_01").unwrap()),
                price: cents(price),
            },
        ),
        Op::Complete(u, p) => (
            u,
            AccountCommand::CompletePurchase {
                purchase_id: PurchaseId::derive(user(u), &key("p", p)),
            },
        ),
        Op::FailPurchase(u, p) => (
            u,
            AccountCommand::FailPurchase {
                purchase_id: PurchaseId::derive(user(u), &key("p", p)),
                reason: "recipient not found".into(),
                force: false,
            },
        ),
        Op::Report(u, r, kind, paid, ours) => {
            let (outcome, status) = match kind {
                0 => (ReportedOutcome::Paid, "paid"),
                1 => (ReportedOutcome::PaidOver, "paid_over"),
                2 => (ReportedOutcome::Underpaid, "wrong_amount"),
                3 => (ReportedOutcome::Held, "locked"),
                4 => (ReportedOutcome::Failed, "cancel"),
                5 => (ReportedOutcome::Failed, "refund_paid"),
                _ => (ReportedOutcome::RefundFailed, "refund_fail"),
            };
            (
                u,
                AccountCommand::RecordPayment {
                    recharge_id: RechargeId::derive(user(u), &key("r", r)),
                    report: PaymentReport {
                        outcome,
                        provider_status: status.into(),
                        invoice_currency: Some("TON".into()),
                        paid_currency: Some(if ours { "TON" } else { "USDT" }.into()),
                        paid_amount: Some(cents(paid).to_string()),
                        txid: None,
                        facts: "{}".into(),
                    },
                    overpay_tolerance_percent: 10,
                },
            )
        }
        Op::Resolve(u, r, credit) => (
            u,
            AccountCommand::ResolveRecharge {
                recharge_id: RechargeId::derive(user(u), &key("r", r)),
                decision: if credit == 0 {
                    ReviewDecision::Reject
                } else {
                    ReviewDecision::Credit(cents(credit))
                },
                admin: "ops".into(),
                reason: "property test".into(),
            },
        ),
        Op::Adjust(u, a, value) => {
            if value == 0 {
                return None;
            }
            let magnitude = cents(value.unsigned_abs());
            (
                u,
                AccountCommand::AdjustBalance {
                    adjustment_id: AdjustmentId::derive(user(u), &key("a", a)),
                    amount: SignedAmount {
                        negative: value < 0,
                        magnitude,
                    },
                    currency: Currency::ton(),
                    admin: "auditor".into(),
                    reason: "property test".into(),
                },
            )
        }
    };
    Some((user(u), command))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn invariants_hold_for_any_command_sequence(ops in prop::collection::vec(op(), 1..80)) {
        let mut accounts: HashMap<UserId, Account> = HashMap::new();
        let mut log: Vec<(UserId, AccountEvent)> = Vec::new();
        let mut trial = TrialBalance::default();
        let mut resolutions: HashMap<PurchaseId, usize> = HashMap::new();

        for op in &ops {
            let Some((user, command)) = command(op) else { continue };
            let account = accounts.entry(user).or_default();
            let decided = decide(user, account, &command);
            if matches!(command, AccountCommand::RequestPurchase { .. }) && account.debt > Decimal::ZERO {
                prop_assert!(decided.is_err(), "a purchase while in debt");
            }
            let Ok(events) = decided else { continue };
            for event in events {
                prop_assert!(unbalanced_currencies(event.postings()).is_empty(), "unbalanced: {event:?}");
                if let AccountEvent::PurchaseCompleted(e) = &event {
                    *resolutions.entry(e.purchase_id).or_default() += 1;
                }
                if let AccountEvent::PurchaseFailed(e) = &event {
                    *resolutions.entry(e.purchase_id).or_default() += 1;
                }
                trial.apply(event.postings());
                account.evolve(&event);
                log.push((user, event));
            }
            prop_assert!(account.check_invariants().is_ok(), "{:?}", account.check_invariants());
            prop_assert!(account.available >= Decimal::ZERO);
            prop_assert!(account.debt >= Decimal::ZERO);
            prop_assert!(account.debt.is_zero() || account.available.is_zero(), "available while in debt");
        }

        prop_assert!(trial.is_zero(), "trial balance {:?}", trial.totals());
        prop_assert!(resolutions.values().all(|&n| n == 1), "a reservation resolved twice");
        for (user, account) in &accounts {
            let replayed = Account::replay(log.iter().filter(|(u, _)| u == user).map(|(_, e)| e));
            prop_assert_eq!(&replayed, account);
            let ton = Currency::ton();
            prop_assert_eq!(trial.balance(LedgerAccount::CustomerAvailable(*user), &ton), account.available);
            prop_assert_eq!(trial.balance(LedgerAccount::CustomerReserved(*user), &ton), account.reserved);
            prop_assert_eq!(-trial.balance(LedgerAccount::CustomerDebt(*user), &ton), account.debt);
        }
    }
}

proptest! {
    // Each case opens a fresh database: fewer cases, same property, through the real store.
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn the_stored_log_replays_to_the_handlers_state(ops in prop::collection::vec(op(), 1..60)) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let backend = starledger_ledger::testing::Backend::sqlite().await;
            let store = backend.open(CommitMode::default()).await;
            let ledger = Ledger::new(store.clone());
            let mut users = Vec::new();
            for (i, op) in ops.iter().enumerate() {
                let Some((user, command)) = command(op) else { continue };
                users.push(user);
                let context = starledger_ledger::testing::flow::context(&format!("op-{i}"));
                match ledger.execute(user, command, &context).await {
                    Ok(_) | Err(CommandError::Rejected(_)) => {}
                    Err(other) => panic!("store failure: {other}"),
                }
            }
            let report = starledger_ledger::testing::audit(store.as_ref()).await;
            assert!(report.is_sound(), "{:?}", report.findings);
            for user in users {
                let cached = ledger.account(user).await.unwrap();
                let replayed = report.accounts.get(user.stream().as_str()).cloned().unwrap_or_default();
                assert_eq!(cached, replayed);
            }
        });
    }
}
