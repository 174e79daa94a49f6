//! Given / when / then tables for the account aggregate: no database, just events in and out.

use chrono::{TimeZone, Utc};
use rust_decimal::Decimal;

use super::*;
use crate::events::*;
use crate::ids::{
    AdjustmentId, IdempotencyKey, PurchaseId, RechargeId, Recipient, UserId, Username,
};
use crate::money::{Amount, Currency, SignedAmount};
use crate::postings::{unbalanced_currencies, Posting};

fn user() -> UserId {
    UserId::new(1001).unwrap()
}

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::parse(text).unwrap()
}

fn amount(text: &str) -> Amount {
    Amount::parse(text).unwrap()
}

fn recharge_id() -> RechargeId {
    RechargeId::derive(user(), &key("r1"))
}

fn purchase_id() -> PurchaseId {
    PurchaseId::derive(user(), &key("p1"))
}

fn register() -> AccountCommand {
    AccountCommand::Register {
        username: Some("alice".into()),
        language: Some("en".into()),
        currency: Currency::ton(),
    }
}

fn request_recharge(value: &str) -> AccountCommand {
    AccountCommand::RequestRecharge {
        recharge_id: recharge_id(),
        amount: amount(value),
        currency: Currency::ton(),
        invoice: Invoice {
            uuid: "inv-1".into(),
            url: "https://pay.example/inv-1".into(),
            expires_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        },
    }
}

fn settle(paid: &str) -> AccountCommand {
    AccountCommand::SettleRecharge {
        recharge_id: recharge_id(),
        status: PaidStatus::Paid,
        paid: amount(paid),
        txid: None,
    }
}

fn purchase(price: &str) -> AccountCommand {
    AccountCommand::RequestPurchase {
        purchase_id: purchase_id(),
        stars: Stars::new(100).unwrap(),
        recipient: Recipient::Gift(Username::parse("@bob_the_gift").unwrap()),
        price: amount(price),
    }
}

/// What a command decided: the events it emitted, or why it was refused.
type Outcome = Result<Vec<AccountEvent>, Rejection>;

/// Given: these commands happened before (each must be accepted). When: `when` is decided.
/// Returns the state after the accepted events (unchanged on a rejection) and the outcome.
fn given_when(given: &[AccountCommand], when: &AccountCommand) -> (Account, Outcome) {
    let mut account = Account::default();
    for command in given {
        for event in decide(user(), &account, command).expect("given commands succeed") {
            account.evolve(&event);
        }
    }
    decided(account, when)
}

/// Given: these events are the account's history, as recorded. When: `when` is decided.
fn given_events_when(history: &[AccountEvent], when: &AccountCommand) -> (Account, Outcome) {
    decided(Account::replay(history), when)
}

fn decided(mut account: Account, when: &AccountCommand) -> (Account, Outcome) {
    let outcome = decide(user(), &account, when);
    if let Ok(events) = &outcome {
        for event in events {
            account.evolve(event);
        }
    }
    (account, outcome)
}

/// Then: the command was accepted and emitted exactly `expected`, in order, every field and
/// every posting included; and each emitted event's postings balance per currency (the
/// ledger's first invariant, checked by the ledger's own check).
#[track_caller]
fn then_events(outcome: &Outcome, expected: &[AccountEvent]) {
    let events = match outcome {
        Ok(events) => events,
        Err(rejection) => panic!("expected {expected:#?}, the command was refused: {rejection:?}"),
    };
    for event in events {
        let unbalanced = unbalanced_currencies(event.postings());
        assert!(
            unbalanced.is_empty(),
            "the postings of {} do not balance ({unbalanced:?}): {:#?}",
            event.event_type(),
            event.postings()
        );
    }
    assert_eq!(events.as_slice(), expected);
}

fn dec(text: &str) -> Decimal {
    text.parse().unwrap()
}

/// Postings as the chart of accounts names them: (`customer:1001:available`, signed amount),
/// all in TON, the account's currency.
fn legs(lines: &[(&str, &str)]) -> Vec<Posting> {
    lines
        .iter()
        .map(|(account, value)| Posting {
            account: account.parse().unwrap(),
            currency: Currency::ton(),
            amount: dec(value),
        })
        .collect()
}

/// The recorded registration of [`register`].
fn registered() -> AccountEvent {
    AccountEvent::UserRegistered(UserRegistered {
        user_id: user(),
        username: Some("alice".into()),
        language: Some("en".into()),
        currency: Currency::ton(),
    })
}

/// The recorded request of [`request_recharge`].
fn recharge_requested(value: &str) -> AccountEvent {
    AccountEvent::RechargeRequested(RechargeRequested {
        recharge_id: recharge_id(),
        amount: amount(value),
        currency: Currency::ton(),
        invoice: Invoice {
            uuid: "inv-1".into(),
            url: "https://pay.example/inv-1".into(),
            expires_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        },
    })
}

/// What [`settle`] records for a recharge with no debt open: a full credit of `paid`, from the
/// Heleket clearing account to the customer's available balance.
fn recharge_settled(paid: &str) -> AccountEvent {
    AccountEvent::RechargeSettled(RechargeSettled {
        recharge_id: recharge_id(),
        status: PaidStatus::Paid,
        credited: amount(paid),
        currency: Currency::ton(),
        txid: None,
        partial: false,
        debt_repaid: dec("0"),
        resolution: None,
        postings: legs(&[
            ("clearing:heleket", &format!("-{paid}")),
            ("customer:1001:available", paid),
        ]),
    })
}

#[test]
fn settling_credits_what_was_actually_paid() {
    let (account, outcome) =
        given_events_when(&[registered(), recharge_requested("10")], &settle("10.5"));
    then_events(&outcome, &[recharge_settled("10.5")]);
    assert_eq!(account.available, dec("10.5"));
    account.check_invariants().unwrap();
}

#[test]
fn a_recharge_settles_at_most_once() {
    let (account, outcome) = given_when(
        &[register(), request_recharge("10"), settle("10")],
        &settle("10"),
    );
    assert_eq!(
        outcome,
        Err(Rejection::RechargeAlreadySettled(recharge_id()))
    );
    assert_eq!(account.available, dec("10"));
}

#[test]
fn a_late_payment_after_a_failure_is_still_credited() {
    let fail = AccountCommand::FailRecharge {
        recharge_id: recharge_id(),
        reason: "expired".into(),
    };
    let (account, outcome) = given_when(&[register(), request_recharge("10"), fail], &settle("10"));
    then_events(&outcome, &[recharge_settled("10")]);
    assert_eq!(account.available, dec("10"));
}

#[test]
fn a_settled_recharge_cannot_fail() {
    let fail = AccountCommand::FailRecharge {
        recharge_id: recharge_id(),
        reason: "cancel".into(),
    };
    let (_, outcome) = given_when(&[register(), request_recharge("10"), settle("10")], &fail);
    assert_eq!(
        outcome,
        Err(Rejection::RechargeAlreadySettled(recharge_id()))
    );
}

#[test]
fn a_purchase_reserves_its_price() {
    let (account, outcome) = given_events_when(
        &[
            registered(),
            recharge_requested("10"),
            recharge_settled("10"),
        ],
        &purchase("4"),
    );
    let gift = Username::parse("bob_the_gift").unwrap();
    then_events(
        &outcome,
        &[AccountEvent::PurchaseRequested(PurchaseRequested {
            purchase_id: purchase_id(),
            stars: Stars::new(100).unwrap(),
            recipient: Some(gift.clone()),
            deliver_to: Some(gift),
            price: amount("4"),
            currency: Currency::ton(),
            postings: legs(&[
                ("customer:1001:available", "-4"),
                ("customer:1001:reserved", "4"),
            ]),
        })],
    );
    assert_eq!((account.available, account.reserved), (dec("6"), dec("4")));
    account.check_invariants().unwrap();
}

#[test]
fn a_purchase_beyond_the_available_balance_is_rejected() {
    let (account, outcome) = given_when(
        &[register(), request_recharge("3"), settle("3")],
        &purchase("4"),
    );
    assert_eq!(
        outcome,
        Err(Rejection::InsufficientFunds {
            available: dec("3"),
            required: dec("4")
        })
    );
    assert_eq!(account.available, dec("3"));
}

#[test]
fn completing_captures_and_failing_refunds() {
    let base = [
        register(),
        request_recharge("10"),
        settle("10"),
        purchase("4"),
    ];
    let complete = AccountCommand::CompletePurchase {
        purchase_id: purchase_id(),
    };
    let (done, outcome) = given_when(&base, &complete);
    // Delivered: the reservation becomes the shop's revenue.
    then_events(
        &outcome,
        &[AccountEvent::PurchaseCompleted(PurchaseCompleted {
            purchase_id: purchase_id(),
            postings: legs(&[("customer:1001:reserved", "-4"), ("revenue:stars", "4")]),
        })],
    );
    assert_eq!((done.available, done.reserved), (dec("6"), dec("0")));

    let fail = AccountCommand::FailPurchase {
        purchase_id: purchase_id(),
        reason: "recipient not found".into(),
        force: false,
    };
    let (refunded, outcome) = given_when(&base, &fail);
    // Failed: the reservation goes back to the customer's available balance.
    then_events(
        &outcome,
        &[AccountEvent::PurchaseFailed(PurchaseFailed {
            purchase_id: purchase_id(),
            reason: "recipient not found".into(),
            postings: legs(&[
                ("customer:1001:reserved", "-4"),
                ("customer:1001:available", "4"),
            ]),
        })],
    );
    assert_eq!(
        (refunded.available, refunded.reserved),
        (dec("10"), dec("0"))
    );
}

#[test]
fn a_reservation_resolves_at_most_once() {
    let complete = AccountCommand::CompletePurchase {
        purchase_id: purchase_id(),
    };
    let fail = AccountCommand::FailPurchase {
        purchase_id: purchase_id(),
        reason: "late failure".into(),
        force: false,
    };
    let given = [
        register(),
        request_recharge("10"),
        settle("10"),
        purchase("4"),
        complete.clone(),
    ];
    for when in [complete, fail] {
        let (account, outcome) = given_when(&given, &when);
        assert!(
            matches!(outcome, Err(Rejection::PurchaseNotOpen { .. })),
            "{when:?}"
        );
        assert_eq!(account.available, dec("6"));
    }
}

#[test]
fn commands_for_unregistered_users_are_rejected() {
    let (_, outcome) = given_when(&[], &request_recharge("10"));
    assert_eq!(outcome, Err(Rejection::UnknownUser));
    let (_, outcome) = given_when(&[register()], &register());
    assert_eq!(outcome, Err(Rejection::AlreadyRegistered));
}

#[test]
fn adjustments_need_a_reason_and_cannot_overdraw() {
    let adjust = |value: &str, reason: &str| AccountCommand::AdjustBalance {
        adjustment_id: AdjustmentId::derive(user(), &key(&format!("adj-{value}-{}", reason.len()))),
        amount: SignedAmount::parse(value).unwrap(),
        currency: Currency::ton(),
        admin: "carol".into(),
        reason: reason.into(),
    };
    let base = [register(), request_recharge("10"), settle("10")];
    let (_, outcome) = given_when(&base, &adjust("5", "   "));
    assert!(matches!(
        outcome,
        Err(Rejection::InvalidText {
            field: "reason",
            ..
        })
    ));
    let (_, outcome) = given_when(&base, &adjust("-10.5", "chargeback"));
    assert!(matches!(
        outcome,
        Err(Rejection::AdjustmentWouldOverdraw { .. })
    ));
    let (account, outcome) = given_when(&base, &adjust("-2.5", "duplicate top-up"));
    then_events(
        &outcome,
        &[AccountEvent::BalanceAdjusted(BalanceAdjusted {
            // The key `adjust` derives: the amount and the reason's length (16).
            adjustment_id: AdjustmentId::derive(user(), &key("adj--2.5-16")),
            amount: SignedAmount::parse("-2.5").unwrap(),
            currency: Currency::ton(),
            admin: "carol".into(),
            reason: "duplicate top-up".into(),
            // A debit: from the customer's available balance to the shop's equity.
            postings: legs(&[
                ("customer:1001:available", "-2.5"),
                ("equity:adjustments", "2.5"),
            ]),
        })],
    );
    assert_eq!(account.available, dec("7.5"));
}

#[test]
fn a_foreign_currency_is_refused() {
    let mut command = request_recharge("10");
    if let AccountCommand::RequestRecharge { currency, .. } = &mut command {
        *currency = Currency::parse("USDT").unwrap();
    }
    let (_, outcome) = given_when(&[register()], &command);
    assert!(matches!(outcome, Err(Rejection::CurrencyMismatch { .. })));
}

#[test]
fn fragment_steps_follow_the_order() {
    let base = [
        register(),
        request_recharge("10"),
        settle("10"),
        purchase("4"),
    ];
    let sent = sent_attempt(1);
    let (_, outcome) = given_when(&base, &sent);
    assert!(matches!(outcome, Err(Rejection::PurchaseNotOpen { .. })));
    let placed = AccountCommand::RecordFragmentOrder {
        purchase_id: purchase_id(),
        fragment_request_id: "req-1".into(),
        ton_amount: amount("0.4"),
    };
    let mut with_order = base.to_vec();
    with_order.push(placed);
    let (account, outcome) = given_when(&with_order, &sent);
    // Recording the payment moves no money: no postings.
    then_events(&outcome, &[order_sent(1)]);
    assert_eq!(
        account.purchases[&purchase_id()].status,
        PurchaseStatus::OrderSent
    );
    // Funds stay reserved while the order is in flight.
    assert_eq!(account.reserved, dec("4"));
}

fn sent_attempt(attempt: u32) -> AccountCommand {
    AccountCommand::RecordFragmentSent {
        purchase_id: purchase_id(),
        wallet_tx: format!("{attempt:064x}"),
        seqno: 7 + attempt,
        valid_until: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        message: "te6cckEBAQEAAgAAAEysuc0=".into(),
        transfers: vec![WalletTransfer {
            destination: "EQBsandboxdestination".into(),
            amount: amount("0.4"),
            payload: Some("te6cckEBAQEADgAAGAAAAABSZWYjMTIzNDU2".into()),
        }],
        attempt,
    }
}

/// What [`sent_attempt`] records: the signed message, exactly as given.
fn order_sent(attempt: u32) -> AccountEvent {
    AccountEvent::FragmentOrderSent(FragmentOrderSent {
        purchase_id: purchase_id(),
        wallet_tx: format!("{attempt:064x}"),
        seqno: Some(7 + attempt),
        valid_until: Some(chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap()),
        message: Some("te6cckEBAQEAAgAAAEysuc0=".into()),
        transfers: vec![WalletTransfer {
            destination: "EQBsandboxdestination".into(),
            amount: amount("0.4"),
            payload: Some("te6cckEBAQEADgAAGAAAAABSZWYjMTIzNDU2".into()),
        }],
        attempt,
    })
}

#[test]
fn a_payment_attempt_follows_the_previous_one_and_no_other() {
    let placed = [
        register(),
        request_recharge("10"),
        settle("10"),
        purchase("4"),
        AccountCommand::RecordFragmentOrder {
            purchase_id: purchase_id(),
            fragment_request_id: "req-1".into(),
            ton_amount: amount("0.4"),
        },
    ];
    // The first payment must be attempt 1.
    let (_, outcome) = given_when(&placed, &sent_attempt(2));
    assert!(matches!(
        outcome,
        Err(Rejection::PaymentAttemptOutOfOrder {
            expected: 1,
            got: 2,
            ..
        })
    ));
    let mut first_sent = placed.to_vec();
    first_sent.push(sent_attempt(1));
    // Attempt 1 again (a second signer racing the first) is refused, and so is skipping one.
    for attempt in [1, 3] {
        let (_, outcome) = given_when(&first_sent, &sent_attempt(attempt));
        assert!(
            matches!(
                outcome,
                Err(Rejection::PaymentAttemptOutOfOrder { expected: 2, .. })
            ),
            "attempt {attempt}: {outcome:?}"
        );
    }
    let (account, outcome) = given_when(&first_sent, &sent_attempt(2));
    then_events(&outcome, &[order_sent(2)]);
    assert_eq!(account.purchases[&purchase_id()].payment_attempts, 2);
    // A completed purchase takes no further payment.
    let mut completed = first_sent.clone();
    completed.push(AccountCommand::CompletePurchase {
        purchase_id: purchase_id(),
    });
    let (_, outcome) = given_when(&completed, &sent_attempt(2));
    assert!(matches!(outcome, Err(Rejection::PurchaseNotOpen { .. })));
}

#[test]
fn a_wallet_message_must_be_base64_of_bounded_size() {
    let placed = [
        register(),
        request_recharge("10"),
        settle("10"),
        purchase("4"),
        AccountCommand::RecordFragmentOrder {
            purchase_id: purchase_id(),
            fragment_request_id: "req-1".into(),
            ton_amount: amount("0.4"),
        },
    ];
    for bad in [String::new(), "not base64!".into(), "A".repeat(8_193)] {
        let mut command = sent_attempt(1);
        if let AccountCommand::RecordFragmentSent { message, .. } = &mut command {
            *message = bad.clone();
        }
        let (_, outcome) = given_when(&placed, &command);
        assert!(
            matches!(outcome, Err(Rejection::InvalidText { .. })),
            "{bad:.20}: {outcome:?}"
        );
    }
}

// ---- What a provider's report credits (DESIGN.md, "money rules at the edge") -------------

/// A provider's report on the recharge of [`recharge_id`].
fn report(status: &str, coin: Option<&str>, paid: Option<&str>) -> AccountCommand {
    let outcome = match status {
        "paid" => ReportedOutcome::Paid,
        "paid_over" => ReportedOutcome::PaidOver,
        "wrong_amount" => ReportedOutcome::Underpaid,
        "locked" => ReportedOutcome::Held,
        "refund_fail" => ReportedOutcome::RefundFailed,
        _ => ReportedOutcome::Failed,
    };
    AccountCommand::RecordPayment {
        recharge_id: recharge_id(),
        report: PaymentReport {
            outcome,
            provider_status: status.into(),
            invoice_currency: Some("TON".into()),
            paid_currency: coin.map(str::to_owned),
            paid_amount: paid.map(str::to_owned),
            txid: Some("tx-1".into()),
            facts: r#"{"status":"paid"}"#.into(),
        },
        overpay_tolerance_percent: 10,
    }
}

fn only_event(outcome: Outcome) -> AccountEvent {
    let events = outcome.expect("accepted");
    assert_eq!(events.len(), 1);
    events.into_iter().next().unwrap()
}

fn review_reason(event: &AccountEvent) -> Option<ReviewReason> {
    match event {
        AccountEvent::RechargeReviewRequired(e) => Some(e.reason),
        _ => None,
    }
}

#[test]
fn a_payment_in_another_coin_is_never_credited_but_reviewed() {
    let base = [register(), request_recharge("10")];
    let (account, outcome) = given_when(&base, &report("paid", Some("USDT"), Some("30")));
    let event = only_event(outcome);
    assert_eq!(review_reason(&event), Some(ReviewReason::ForeignCoin));
    assert_eq!(account.available, dec("0"));
    assert!(matches!(
        account.recharges[&recharge_id()].status,
        RechargeStatus::NeedsReview { .. }
    ));
    // Nor is it credited when a later report comes in: the operator sees that too.
    let reviewed = [
        register(),
        request_recharge("10"),
        report("paid", Some("USDT"), Some("30")),
    ];
    let (account, outcome) = given_when(&reviewed, &report("paid_over", Some("TON"), Some("10.5")));
    assert_eq!(
        review_reason(&only_event(outcome)),
        Some(ReviewReason::WhileInReview)
    );
    assert_eq!(account.available, dec("0"));
    // And once the operator closed it without a credit, a late report goes back to them: they
    // may have refunded the payer by other means.
    let mut rejected = reviewed.to_vec();
    rejected.push(AccountCommand::ResolveRecharge {
        recharge_id: recharge_id(),
        decision: ReviewDecision::Reject,
        admin: "carol".into(),
        reason: "refunded to the payer by Heleket support".into(),
    });
    let (account, outcome) = given_when(&rejected, &report("paid_over", Some("TON"), Some("10.5")));
    assert_eq!(
        review_reason(&only_event(outcome)),
        Some(ReviewReason::AfterReview)
    );
    assert_eq!(account.available, dec("0"));
    // A recharge that only expired (no review) still takes a late payment: the money arrived.
    let expired = [
        register(),
        request_recharge("10"),
        report("cancel", None, None),
    ];
    let (account, _) = given_when(&expired, &report("paid", Some("TON"), Some("10")));
    assert_eq!(account.available, dec("10"));
}

#[test]
fn a_missing_coin_or_an_unreadable_amount_is_reviewed_not_guessed() {
    let base = [register(), request_recharge("10")];
    for (coin, paid, reason) in [
        (None, Some("10"), ReviewReason::MissingCoin),
        (Some("TON"), None, ReviewReason::UnreadableAmount),
        (Some("TON"), Some("ten"), ReviewReason::UnreadableAmount),
        (Some("TON"), Some("-10"), ReviewReason::UnreadableAmount),
        (Some("TON"), Some("1e1"), ReviewReason::UnreadableAmount),
        (
            Some("TON"),
            Some("0.0000000001"),
            ReviewReason::UnreadableAmount,
        ),
        (Some("ton"), Some("10"), ReviewReason::ForeignCoin),
    ] {
        let (account, outcome) = given_when(&base, &report("paid", coin, paid));
        assert_eq!(
            review_reason(&only_event(outcome)),
            Some(reason),
            "{coin:?} {paid:?}"
        );
        assert_eq!(account.available, dec("0"));
    }
}

#[test]
fn an_overpayment_is_credited_up_to_the_tolerance_and_reviewed_beyond_it() {
    let base = [register(), request_recharge("10")];
    let (account, outcome) = given_when(&base, &report("paid_over", Some("TON"), Some("11")));
    assert!(matches!(
        only_event(outcome),
        AccountEvent::RechargeSettled(_)
    ));
    assert_eq!(account.available, dec("11"));

    let (account, outcome) = given_when(
        &base,
        &report("paid_over", Some("TON"), Some("11.000000001")),
    );
    assert_eq!(
        review_reason(&only_event(outcome)),
        Some(ReviewReason::AboveTolerance)
    );
    assert_eq!(account.available, dec("0"));
}

#[test]
fn an_underpayment_credits_what_arrived_and_is_marked_partial() {
    let base = [register(), request_recharge("10")];
    let (account, outcome) = given_when(&base, &report("wrong_amount", Some("TON"), Some("7.5")));
    let AccountEvent::RechargeSettled(settled) = only_event(outcome) else {
        panic!("not a settlement");
    };
    assert!(settled.partial);
    assert_eq!(settled.status, PaidStatus::WrongAmount);
    assert_eq!(account.available, dec("7.5"));
    // An "underpayment" of the whole amount contradicts itself.
    let (_, outcome) = given_when(&base, &report("wrong_amount", Some("TON"), Some("10")));
    assert_eq!(
        review_reason(&only_event(outcome)),
        Some(ReviewReason::InconsistentReport)
    );
}

#[test]
fn a_hold_waits_and_a_later_final_status_decides() {
    let held = [
        register(),
        request_recharge("10"),
        report("locked", Some("TON"), Some("10")),
    ];
    let (account, _) = given_when(&held[..2], &held[2]);
    assert_eq!(
        account.recharges[&recharge_id()].status,
        RechargeStatus::OnHold
    );
    assert_eq!(account.available, dec("0"));

    let (account, outcome) = given_when(&held, &report("paid", Some("TON"), Some("10")));
    assert!(matches!(
        only_event(outcome),
        AccountEvent::RechargeSettled(_)
    ));
    assert_eq!(account.available, dec("10"));

    let (account, outcome) = given_when(&held, &report("fail", Some("TON"), Some("10")));
    assert!(matches!(
        only_event(outcome),
        AccountEvent::RechargeFailed(_)
    ));
    assert_eq!(account.available, dec("0"));
}

#[test]
fn a_refund_after_the_credit_was_spent_leaves_a_debt_and_available_at_zero() {
    let spent = [
        register(),
        request_recharge("10"),
        report("paid", Some("TON"), Some("10")),
        purchase("4"),
        AccountCommand::CompletePurchase {
            purchase_id: purchase_id(),
        },
    ];
    let (account, outcome) = given_when(&spent, &report("refund_paid", Some("TON"), Some("10")));
    let AccountEvent::RechargeReversed(reversed) = only_event(outcome) else {
        panic!("not a reversal");
    };
    assert_eq!(
        (reversed.from_available, reversed.debt),
        (dec("6"), dec("4"))
    );
    assert_eq!((account.available, account.debt), (dec("0"), dec("4")));
    account.check_invariants().unwrap();

    // While the debt is open nothing can be bought.
    let mut in_debt = spent.to_vec();
    in_debt.push(report("refund_paid", Some("TON"), Some("10")));
    let another = AccountCommand::RequestPurchase {
        purchase_id: PurchaseId::derive(user(), &key("p2")),
        stars: Stars::new(50).unwrap(),
        recipient: Recipient::Buyer(Username::parse("alice_01").unwrap()),
        price: amount("0.1"),
    };
    let (_, outcome) = given_when(&in_debt, &another);
    assert_eq!(outcome, Err(Rejection::AccountInDebt { debt: dec("4") }));

    // The next top-up pays the debt first.
    let second = RechargeId::derive(user(), &key("r2"));
    in_debt.push(AccountCommand::RequestRecharge {
        recharge_id: second,
        amount: amount("5"),
        currency: Currency::ton(),
        invoice: Invoice {
            uuid: "inv-2".into(),
            url: "https://pay.example/inv-2".into(),
            expires_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        },
    });
    let (account, outcome) = given_when(
        &in_debt,
        &AccountCommand::SettleRecharge {
            recharge_id: second,
            status: PaidStatus::Paid,
            paid: amount("5"),
            txid: None,
        },
    );
    let AccountEvent::RechargeSettled(settled) = only_event(outcome) else {
        panic!("not a settlement");
    };
    assert_eq!(settled.debt_repaid, dec("4"));
    assert_eq!((account.available, account.debt), (dec("1"), dec("0")));
    account.check_invariants().unwrap();
}

#[test]
fn a_refund_before_any_credit_just_fails_the_recharge_and_a_failed_refund_is_reviewed() {
    let base = [register(), request_recharge("10")];
    let (account, outcome) = given_when(&base, &report("refund_paid", Some("TON"), None));
    assert!(matches!(
        only_event(outcome),
        AccountEvent::RechargeFailed(_)
    ));
    assert_eq!(account.debt, dec("0"));
    let (_, outcome) = given_when(&base, &report("refund_fail", Some("TON"), Some("10")));
    assert_eq!(
        review_reason(&only_event(outcome)),
        Some(ReviewReason::RefundFailed)
    );
    // After a credit a failed refund leaves the credit as it is.
    let credited = [
        register(),
        request_recharge("10"),
        report("paid", Some("TON"), Some("10")),
    ];
    let (account, outcome) = given_when(&credited, &report("refund_fail", Some("TON"), None));
    assert_eq!(
        outcome,
        Err(Rejection::RechargeAlreadySettled(recharge_id()))
    );
    assert_eq!(account.available, dec("10"));
}

#[test]
fn an_operator_resolves_a_review_once_by_credit_or_rejection() {
    let reviewed = [
        register(),
        request_recharge("10"),
        report("paid", Some("USDT"), Some("30")),
    ];
    let resolve = |decision| AccountCommand::ResolveRecharge {
        recharge_id: recharge_id(),
        decision,
        admin: "carol".into(),
        reason: "checked with Heleket support".into(),
    };
    let (account, outcome) = given_when(&reviewed, &resolve(ReviewDecision::Credit(amount("9"))));
    let AccountEvent::RechargeSettled(settled) = only_event(outcome) else {
        panic!("not a settlement");
    };
    assert_eq!(settled.status, PaidStatus::Reviewed);
    assert!(settled.partial);
    assert_eq!(settled.resolution.as_ref().unwrap().admin, "carol");
    assert_eq!(account.available, dec("9"));

    let (account, outcome) = given_when(&reviewed, &resolve(ReviewDecision::Reject));
    assert!(matches!(
        only_event(outcome),
        AccountEvent::RechargeFailed(_)
    ));
    assert_eq!(account.available, dec("0"));

    // A recharge nobody needs to decide cannot be resolved.
    let (_, outcome) = given_when(
        &[register(), request_recharge("10")],
        &resolve(ReviewDecision::Credit(amount("10"))),
    );
    assert!(matches!(
        outcome,
        Err(Rejection::RechargeNotAwaitingDecision { .. })
    ));
}

#[test]
fn failing_a_paid_order_needs_force() {
    let sent = [
        register(),
        request_recharge("10"),
        settle("10"),
        purchase("4"),
        AccountCommand::RecordFragmentOrder {
            purchase_id: purchase_id(),
            fragment_request_id: "req-1".into(),
            ton_amount: amount("3"),
        },
        sent_attempt(1),
    ];
    let fail = |force| AccountCommand::FailPurchase {
        purchase_id: purchase_id(),
        reason: "operator".into(),
        force,
    };
    let (account, outcome) = given_when(&sent, &fail(false));
    assert_eq!(outcome, Err(Rejection::PaymentRecorded(purchase_id())));
    assert_eq!(account.reserved, dec("4"));
    let (account, outcome) = given_when(&sent, &fail(true));
    then_events(
        &outcome,
        &[AccountEvent::PurchaseFailed(PurchaseFailed {
            purchase_id: purchase_id(),
            reason: "operator".into(),
            postings: legs(&[
                ("customer:1001:reserved", "-4"),
                ("customer:1001:available", "4"),
            ]),
        })],
    );
    assert_eq!((account.available, account.reserved), (dec("10"), dec("0")));
}

#[test]
fn free_text_refuses_bidi_overrides_and_zero_width_characters() {
    for text in [
        "alice\u{202E}gnp.exe",
        "zero\u{200B}width",
        "join\u{200D}er",
        "\u{FEFF}bom",
        "isolate\u{2066}x\u{2069}",
        "soft\u{00AD}hyphen",
    ] {
        let (_, outcome) = given_when(
            &[],
            &AccountCommand::Register {
                username: Some(text.into()),
                language: None,
                currency: Currency::ton(),
            },
        );
        assert!(
            matches!(
                outcome,
                Err(Rejection::InvalidText {
                    field: "username",
                    ..
                })
            ),
            "{text:?}"
        );
    }
    // Letters of any script are fine.
    let (_, outcome) = given_when(
        &[],
        &AccountCommand::Register {
            username: Some("Алиса_ß_日本".into()),
            language: None,
            currency: Currency::ton(),
        },
    );
    then_events(
        &outcome,
        &[AccountEvent::UserRegistered(UserRegistered {
            user_id: user(),
            username: Some("Алиса_ß_日本".into()),
            language: None,
            currency: Currency::ton(),
        })],
    );
}

fn update_profile(username: Option<&str>, language: Option<&str>) -> AccountCommand {
    AccountCommand::UpdateProfile {
        username: username.map(str::to_owned),
        language: language.map(str::to_owned),
    }
}

#[test]
fn a_profile_change_is_recorded_once_and_an_unchanged_one_not_at_all() {
    let renamed = update_profile(Some("alice_new"), None);
    let (account, outcome) = given_when(&[register()], &renamed);
    assert_eq!(
        outcome,
        Ok(vec![AccountEvent::ProfileUpdated(ProfileUpdated {
            username: Some("alice_new".into()),
            // An update without a language keeps the recorded one.
            language: Some("en".into()),
        })])
    );
    let profile = account.profile.clone().unwrap();
    assert_eq!(profile.username.as_deref(), Some("alice_new"));
    assert_eq!(profile.language.as_deref(), Some("en"));

    let (_, again) = given_when(&[register(), renamed.clone()], &renamed);
    assert_eq!(again, Err(Rejection::ProfileUnchanged));

    // Giving the username up is a change too.
    let (account, outcome) = given_when(&[register(), renamed], &update_profile(None, Some("ru")));
    then_events(
        &outcome,
        &[AccountEvent::ProfileUpdated(ProfileUpdated {
            username: None,
            language: Some("ru".into()),
        })],
    );
    let profile = account.profile.unwrap();
    assert_eq!(
        (profile.username, profile.language),
        (None, Some("ru".into()))
    );

    let (_, stranger) = given_when(&[], &update_profile(Some("mallory"), None));
    assert_eq!(stranger, Err(Rejection::UnknownUser));
}

#[test]
fn an_order_records_whom_it_delivers_to() {
    let funded = [register(), request_recharge("10"), settle("10")];
    for (recipient, gift) in [
        (
            Recipient::Buyer(Username::parse("alice_new").unwrap()),
            None,
        ),
        (
            Recipient::Gift(Username::parse("@abcd").unwrap()),
            Some("abcd"),
        ),
    ] {
        let order = AccountCommand::RequestPurchase {
            purchase_id: purchase_id(),
            stars: Stars::new(100).unwrap(),
            recipient: recipient.clone(),
            price: amount("4"),
        };
        let (_, outcome) = given_when(&funded, &order);
        let events = outcome.unwrap();
        let [AccountEvent::PurchaseRequested(requested)] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!(requested.deliver_to.as_ref(), Some(recipient.deliver_to()));
        assert_eq!(requested.recipient.as_ref().map(Username::as_str), gift);
        assert!(order.is_recorded_by(&events[0]));
    }
}

#[test]
fn a_repeated_order_is_the_same_order_only_for_the_same_gift() {
    let funded = [register(), request_recharge("10"), settle("10")];
    let order = |recipient: Recipient| AccountCommand::RequestPurchase {
        purchase_id: purchase_id(),
        stars: Stars::new(100).unwrap(),
        recipient,
        price: amount("4"),
    };
    let name = |text: &str| Username::parse(text).unwrap();
    let (_, own) = given_when(&funded, &order(Recipient::Buyer(name("alice_old"))));
    let own = &own.unwrap()[0];
    // The buyer renamed themselves before a retry: the retry is still the first order (and
    // replays it, delivering to the name recorded then).
    assert!(order(Recipient::Buyer(name("alice_new"))).is_recorded_by(own));
    assert!(!order(Recipient::Gift(name("alice_old"))).is_recorded_by(own));

    let (_, gift) = given_when(&funded, &order(Recipient::Gift(name("bob_gift"))));
    let gift = &gift.unwrap()[0];
    assert!(order(Recipient::Gift(name("bob_gift"))).is_recorded_by(gift));
    assert!(!order(Recipient::Gift(name("mallory"))).is_recorded_by(gift));
    assert!(!order(Recipient::Buyer(name("bob_gift"))).is_recorded_by(gift));
}
