//! The JSON Schemas in `schemas/events/` against what the domain really writes.
//!
//! Every current event type is produced by running the real `decide` / `evolve` on one
//! account, then its `to_data()` is validated against `<EventType>.v<N>.json`. Hand-made bad
//! events check that the schemas are strict enough to be worth having.
//!
//! The schemas are draft 2020-12 and are validated with that draft, format checks on. They
//! also keep to keywords whose meaning is the same in draft 7
//! (`schemas_use_only_keywords_shared_by_draft_7_and_2020_12`), so older tooling reads them
//! the same way.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use jsonschema::{Draft, JSONSchema};
use serde_json::{json, Value};
use starledger_ledger::account::{
    decide, Account, AccountCommand, PaymentReport, ReportedOutcome, ReviewDecision,
};
use starledger_ledger::events::{
    AccountEvent, Actor, EventMetadata, Invoice, PaidStatus, Stars, WalletTransfer,
    CURRENT_VERSIONS,
};
use starledger_ledger::ids::{
    AdjustmentId, IdempotencyKey, PurchaseId, RechargeId, Recipient, UserId, Username,
};
use starledger_ledger::money::{Amount, Currency, SignedAmount};

const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/events")
}

fn schema_path(file_stem: &str) -> PathBuf {
    schema_dir().join(format!("{file_stem}.json"))
}

fn event_schema_stem(event_type: &str, version: i32) -> String {
    format!("{event_type}.v{version}")
}

fn load_schema(file_stem: &str) -> Value {
    let path = schema_path(file_stem);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read schema {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("schema {} is not valid JSON: {e}", path.display()))
}

fn compile(file_stem: &str) -> JSONSchema {
    let schema = load_schema(file_stem);
    JSONSchema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        .should_ignore_unknown_formats(false)
        // This version of the validator does not ship the `uuid` format; check it ourselves.
        .with_format("uuid", |text: &str| uuid::Uuid::parse_str(text).is_ok())
        .compile(&schema)
        .unwrap_or_else(|e| panic!("schema {file_stem} does not compile: {e}"))
}

/// The validation errors of `instance` against the schema `file_stem`, as readable lines.
fn violations(file_stem: &str, instance: &Value) -> Vec<String> {
    let schema = compile(file_stem);
    let outcome = schema.validate(instance);
    match outcome {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .map(|error| format!("at {:?}: {error}", error.instance_path.to_string()))
            .collect(),
    }
}

fn assert_valid(file_stem: &str, instance: &Value) {
    let errors = violations(file_stem, instance);
    assert!(
        errors.is_empty(),
        "{file_stem} rejects {instance}:\n  {}",
        errors.join("\n  ")
    );
}

fn assert_invalid(file_stem: &str, instance: &Value, why: &str) {
    assert!(
        !violations(file_stem, instance).is_empty(),
        "{file_stem} must reject {why}, but accepts {instance}"
    );
}

// ---- Running the real domain -------------------------------------------------------------

const USER: i64 = 424_242;

fn user() -> UserId {
    UserId::new(USER).expect("valid user id")
}

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::parse(text).expect("valid idempotency key")
}

fn amount(text: &str) -> Amount {
    Amount::parse(text).expect("valid amount")
}

fn ton() -> Currency {
    Currency::ton()
}

fn invoice(uuid: &str) -> Invoice {
    Invoice {
        uuid: uuid.to_owned(),
        url: format!("https://pay.heleket.com/pay/{uuid}"),
        expires_at: Utc
            .timestamp_opt(1_767_225_600, 123_000_000)
            .single()
            .expect("valid timestamp"),
    }
}

/// Decides `command` on `account`, folds the events in and appends them to `log`.
fn run(account: &mut Account, log: &mut Vec<AccountEvent>, command: AccountCommand) {
    let events = decide(user(), account, &command)
        .unwrap_or_else(|rejection| panic!("{command:?} was rejected: {rejection}"));
    for event in events {
        account.evolve(&event);
        log.push(event);
    }
}

/// A provider's report on `recharge` as the Heleket adapter would make it.
fn payment(
    recharge_id: RechargeId,
    outcome: ReportedOutcome,
    status: &str,
    paid_currency: Option<&str>,
    paid_amount: Option<&str>,
) -> AccountCommand {
    AccountCommand::RecordPayment {
        recharge_id,
        report: PaymentReport {
            outcome,
            provider_status: status.into(),
            invoice_currency: Some("TON".into()),
            paid_currency: paid_currency.map(str::to_owned),
            paid_amount: paid_amount.map(str::to_owned),
            txid: Some("b4f1c2d3e4a5968778695a4b3c2d1e0f".into()),
            facts: json!({"status": status, "payer_currency": paid_currency,
                "payment_amount": paid_amount, "network": "ton"})
            .to_string(),
        },
        overpay_tolerance_percent: 10,
    }
}

/// One account's life that produces every current event type at least once.
fn sample_events() -> Vec<AccountEvent> {
    let mut account = Account::default();
    let mut log = Vec::new();

    let topped_up = RechargeId::derive(user(), &key("api:recharge-1"));
    let expired = RechargeId::derive(user(), &key("api:recharge-2"));
    let gift = PurchaseId::derive(user(), &key("tg:update:1001"));
    let own = PurchaseId::derive(user(), &key("tg:update:1002"));
    let held = RechargeId::derive(user(), &key("api:recharge-3"));
    let reviewed = RechargeId::derive(user(), &key("api:recharge-4"));
    let big = PurchaseId::derive(user(), &key("tg:update:1003"));

    let commands = vec![
        AccountCommand::Register {
            username: Some("alice_01".into()),
            language: Some("en".into()),
            currency: ton(),
        },
        AccountCommand::UpdateProfile {
            username: Some("alice_02".into()),
            language: None,
        },
        AccountCommand::RequestRecharge {
            recharge_id: topped_up,
            amount: amount("25"),
            currency: ton(),
            invoice: invoice("8b3c1f5e-2d4a-4c6b-9e1f-0a7d3b5c9e21"),
        },
        AccountCommand::SettleRecharge {
            recharge_id: topped_up,
            status: PaidStatus::PaidOver,
            paid: amount("25.000000001"),
            txid: Some("b4f1c2d3e4a5968778695a4b3c2d1e0f".into()),
        },
        AccountCommand::RequestPurchase {
            purchase_id: gift,
            stars: Stars::new(1_000).expect("valid stars"),
            recipient: Recipient::Gift(Username::parse("@bob_the_gift").expect("valid username")),
            price: amount("3.75"),
        },
        AccountCommand::RequestPurchase {
            purchase_id: own,
            stars: Stars::new(50).expect("valid stars"),
            recipient: Recipient::Buyer(Username::parse("alice_01").expect("valid username")),
            price: amount("0.19"),
        },
        AccountCommand::RecordFragmentOrder {
            purchase_id: gift,
            fragment_request_id: "req_5e0b7a2c91".into(),
            ton_amount: amount("2.9"),
        },
        AccountCommand::RecordFragmentSent {
            purchase_id: gift,
            wallet_tx: "9f2c4e1b7a3d5c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a".into(),
            seqno: 41,
            valid_until: "2026-11-29T12:05:00Z".parse().expect("valid time"),
            message: "te6cckEBAgEAqgAB4YgAK1c2Y8rs+/w==".into(),
            transfers: vec![WalletTransfer {
                destination: "EQBvW8Z5huBkMJYdnfAEM5JqTNkuWX3diqYENkWsIL0XggGG".into(),
                amount: amount("2.9"),
                payload: Some("te6cckEBAQEAGAAALAAAAABUZWxlZ3JhbSBTdGFycyBSZWYjNWUwYjdh".into()),
            }],
            attempt: 1,
        },
        AccountCommand::CompletePurchase { purchase_id: gift },
        AccountCommand::FailPurchase {
            purchase_id: own,
            reason: "Fragment: recipient cannot receive Stars".into(),
            force: false,
        },
        AccountCommand::AdjustBalance {
            adjustment_id: AdjustmentId::derive(user(), &key("api:adjust-1")),
            amount: SignedAmount::parse("1.5").expect("valid signed amount"),
            currency: ton(),
            admin: "ops_carol".into(),
            reason: "goodwill credit for a slow delivery".into(),
        },
        AccountCommand::AdjustBalance {
            adjustment_id: AdjustmentId::derive(user(), &key("api:adjust-2")),
            amount: SignedAmount::parse("-0.5").expect("valid signed amount"),
            currency: ton(),
            admin: "ops_carol".into(),
            reason: "duplicate credit reversed".into(),
        },
        AccountCommand::RequestRecharge {
            recharge_id: expired,
            amount: amount("10"),
            currency: ton(),
            invoice: invoice("0c9d8e7f-6a5b-4c3d-8e2f-1a0b9c8d7e6f"),
        },
        AccountCommand::FailRecharge {
            recharge_id: expired,
            reason: "expired".into(),
        },
        // A payment held for a check, then paid: v2 settlement from a hold.
        AccountCommand::RequestRecharge {
            recharge_id: held,
            amount: amount("5"),
            currency: ton(),
            invoice: invoice("1d2c3b4a-5e6f-4a7b-8c9d-0e1f2a3b4c5d"),
        },
        payment(
            held,
            ReportedOutcome::Held,
            "locked",
            Some("TON"),
            Some("5"),
        ),
        payment(held, ReportedOutcome::Paid, "paid", Some("TON"), Some("5")),
        // Paid in another coin: reviewed, then credited by an operator.
        AccountCommand::RequestRecharge {
            recharge_id: reviewed,
            amount: amount("2"),
            currency: ton(),
            invoice: invoice("2e3d4c5b-6a7f-4b8c-9d0e-1f2a3b4c5d6e"),
        },
        payment(
            reviewed,
            ReportedOutcome::Paid,
            "paid",
            Some("USDT"),
            Some("30"),
        ),
        AccountCommand::ResolveRecharge {
            recharge_id: reviewed,
            decision: ReviewDecision::Credit(amount("1.9")),
            admin: "ops_carol".into(),
            reason: "payer sent 1.9 TON after the USDT was refunded".into(),
        },
        // Most of the balance reserved, then the held payment refunded: a debt.
        AccountCommand::RequestPurchase {
            purchase_id: big,
            stars: Stars::new(5_000).expect("valid stars"),
            recipient: Recipient::Buyer(Username::parse("abcd").expect("valid username")),
            price: amount("28"),
        },
        payment(
            held,
            ReportedOutcome::Failed,
            "refund_paid",
            Some("TON"),
            Some("5"),
        ),
        // The order fails: its release pays the debt first.
        AccountCommand::FailPurchase {
            purchase_id: big,
            reason: "Fragment: KYC required".into(),
            force: false,
        },
        // The first top-up refunded after being spent in part: a debt again, which an
        // adjustment then pays first.
        payment(
            topped_up,
            ReportedOutcome::Failed,
            "refund_paid",
            Some("TON"),
            Some("25.000000001"),
        ),
        AccountCommand::AdjustBalance {
            adjustment_id: AdjustmentId::derive(user(), &key("api:adjust-3")),
            amount: SignedAmount::parse("10").expect("valid signed amount"),
            currency: ton(),
            admin: "ops_carol".into(),
            reason: "goodwill credit".into(),
        },
    ];
    for command in commands {
        run(&mut account, &mut log, command);
    }
    account
        .check_invariants()
        .expect("the sample account stays sound");
    log
}

fn sample_of(event_type: &str) -> Value {
    sample_events()
        .iter()
        .find(|event| event.event_type() == event_type)
        .map(AccountEvent::to_data)
        .unwrap_or_else(|| panic!("no sample {event_type} event"))
}

/// A copy of `data` with `field` set to `value`.
fn with_field(data: &Value, field: &str, value: Value) -> Value {
    let mut changed = data.clone();
    changed
        .as_object_mut()
        .expect("event data is a JSON object")
        .insert(field.to_owned(), value);
    changed
}

// ---- What the domain writes matches the schemas -----------------------------------------

#[test]
fn every_current_event_matches_its_schema() {
    for event in sample_events() {
        let stem = event_schema_stem(event.event_type(), event.schema_version());
        assert_valid(&stem, &event.to_data());
    }
}

#[test]
fn every_current_version_has_a_schema_and_a_sample() {
    let sampled: BTreeSet<(&str, i32)> = sample_events()
        .iter()
        .map(|event| (event.event_type(), event.schema_version()))
        .collect();
    for &(event_type, version) in CURRENT_VERSIONS {
        let path = schema_path(&event_schema_stem(event_type, version));
        assert!(path.is_file(), "missing schema {}", path.display());
        assert!(
            sampled.contains(&(event_type, version)),
            "no sample event covers {event_type} v{version}"
        );
    }
    let current: BTreeSet<(&str, i32)> = CURRENT_VERSIONS.iter().copied().collect();
    assert_eq!(
        sampled, current,
        "samples cover exactly the current versions"
    );
}

#[test]
fn every_version_ever_written_keeps_its_schema() {
    // Stored events never change, so versions 1..=current must all still have a file.
    for &(event_type, current) in CURRENT_VERSIONS {
        for version in 1..=current {
            let path = schema_path(&event_schema_stem(event_type, version));
            assert!(path.is_file(), "missing schema {}", path.display());
        }
    }
}

#[test]
fn schema_files_are_exactly_the_known_types_and_versions() {
    let mut expected: BTreeSet<String> = BTreeSet::from(["EventMetadata.json".to_owned()]);
    for &(event_type, current) in CURRENT_VERSIONS {
        for version in 1..=current {
            expected.insert(format!("{}.json", event_schema_stem(event_type, version)));
        }
    }
    let found: BTreeSet<String> = std::fs::read_dir(schema_dir())
        .expect("schemas/events exists")
        .map(|entry| {
            entry
                .expect("readable directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(found, expected);
}

#[test]
fn sample_events_survive_the_round_trip_through_json() {
    for event in sample_events() {
        let decoded = AccountEvent::decode(
            event.event_type(),
            event.schema_version(),
            &event.to_data().to_string(),
        )
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", event.event_type()));
        assert_eq!(decoded, event);
    }
}

#[test]
fn event_metadata_matches_its_schema() {
    let stream = user().stream();
    let idempotency_key = key("tg:update:1001");
    let first = idempotency_key.event_id(&stream, 0);
    let by_user = EventMetadata {
        correlation_id: first.0,
        causation_id: Some(idempotency_key.event_id(&stream, 1).0),
        actor: Actor::User(user()).to_string(),
        idempotency_key: idempotency_key.as_str().to_owned(),
    };
    let by_admin = EventMetadata {
        correlation_id: first.0,
        causation_id: None,
        actor: Actor::Admin("ops_carol".into()).to_string(),
        idempotency_key: "api:adjust-1".into(),
    };
    let by_provider = EventMetadata {
        actor: Actor::Heleket.to_string(),
        ..by_admin.clone()
    };
    let by_system = EventMetadata {
        actor: Actor::System.to_string(),
        ..by_admin.clone()
    };
    for metadata in [by_user, by_admin, by_provider, by_system] {
        let value = serde_json::to_value(&metadata).expect("metadata serialises");
        assert_valid("EventMetadata", &value);
    }
}

// ---- Old versions ------------------------------------------------------------------------

#[test]
fn user_registered_v1_matches_its_schema_and_is_upcast() {
    for data in [
        json!({"user_id": 42, "username": "alice_01"}),
        json!({"user_id": 43, "username": null}),
    ] {
        assert_valid("UserRegistered.v1", &data);
        let event = AccountEvent::decode("UserRegistered", 1, &data.to_string())
            .unwrap_or_else(|e| panic!("{data} does not decode: {e}"));
        let AccountEvent::UserRegistered(registered) = &event else {
            panic!("UserRegistered v1 decoded as {}", event.event_type());
        };
        assert_eq!(registered.currency, Currency::ton());
        assert_eq!(registered.language, None);
        // Upcast events are written back (if ever) in the current shape.
        assert_valid(
            &event_schema_stem("UserRegistered", event.schema_version()),
            &event.to_data(),
        );
    }
}

#[test]
fn purchase_requested_v1_matches_its_schema_and_is_upcast_with_its_delivery_name() {
    let gift = json!({
        "purchase_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        "stars": 100,
        "recipient": "bob_the_gift",
        "price": "3.75",
        "currency": "TON",
        "postings": [
            {"account": "customer:42:available", "currency": "TON", "amount": "-3.75"},
            {"account": "customer:42:reserved", "currency": "TON", "amount": "3.75"}
        ]
    });
    let own = with_field(&gift, "recipient", json!(null));
    for (data, deliver_to) in [(&gift, Some("bob_the_gift")), (&own, None)] {
        assert_valid("PurchaseRequested.v1", data);
        assert_invalid(
            "PurchaseRequested.v2",
            data,
            "a v1 event without deliver_to",
        );
        let event = AccountEvent::decode("PurchaseRequested", 1, &data.to_string())
            .unwrap_or_else(|e| panic!("{data} does not decode: {e}"));
        let AccountEvent::PurchaseRequested(requested) = &event else {
            panic!("PurchaseRequested v1 decoded as {}", event.event_type());
        };
        // A v1 gift goes to its recipient; a v1 order for the buyer recorded no name, and
        // none is made up.
        assert_eq!(
            requested.deliver_to.as_ref().map(|n| n.as_str()),
            deliver_to
        );
    }
}

#[test]
fn user_registered_versions_are_not_interchangeable() {
    let v2 = sample_of("UserRegistered");
    assert_invalid(
        "UserRegistered.v1",
        &v2,
        "the v2 fields language and currency",
    );
    let v1 = json!({"user_id": 42, "username": "alice_01"});
    assert_invalid("UserRegistered.v2", &v1, "a v1 event without currency");
}

#[test]
fn fragment_order_sent_v1_matches_its_schema_and_is_upcast_as_the_first_attempt() {
    let data = json!({
        "purchase_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        "wallet_tx": "te6cckEBAQEAOQAAbWgAK1c2Y8rs"
    });
    assert_valid("FragmentOrderSent.v1", &data);
    assert_invalid(
        "FragmentOrderSent.v2",
        &data,
        "a v1 event without its message",
    );
    let event = AccountEvent::decode("FragmentOrderSent", 1, &data.to_string())
        .unwrap_or_else(|e| panic!("{data} does not decode: {e}"));
    let AccountEvent::FragmentOrderSent(sent) = &event else {
        panic!("FragmentOrderSent v1 decoded as {}", event.event_type());
    };
    assert_eq!(sent.attempt, 1);
    assert_eq!(
        (sent.seqno, sent.valid_until, sent.message.as_deref()),
        (None, None, None)
    );
    assert_valid(
        &event_schema_stem("FragmentOrderSent", event.schema_version()),
        &event.to_data(),
    );
}

// ---- The schemas are strict ----------------------------------------------------------------

#[test]
fn amounts_given_as_json_numbers_are_rejected() {
    let recharge = sample_of("RechargeRequested");
    assert_valid("RechargeRequested.v1", &recharge);
    assert_invalid(
        "RechargeRequested.v1",
        &with_field(&recharge, "amount", json!(25)),
        "an amount that is a JSON number",
    );
    assert_invalid(
        "RechargeRequested.v1",
        &with_field(&recharge, "amount", json!(25.5)),
        "an amount that is a JSON float",
    );
}

#[test]
fn negative_zero_and_malformed_positive_amounts_are_rejected() {
    let purchase = sample_of("PurchaseRequested");
    assert_valid("PurchaseRequested.v2", &purchase);
    for (bad, why) in [
        ("-3.75", "a negative price"),
        ("0", "a zero price"),
        ("0.000", "a zero price with decimals"),
        ("+3.75", "a price with a plus sign"),
        ("3.75e0", "a price with an exponent"),
        ("3,75", "a price with a decimal comma"),
        ("3.", "a price with a trailing dot"),
        ("0.0000000001", "a price with more than 9 decimals"),
        ("12345678901", "a price with more than 10 integer digits"),
    ] {
        assert_invalid(
            "PurchaseRequested.v2",
            &with_field(&purchase, "price", json!(bad)),
            why,
        );
    }
}

#[test]
fn unknown_fields_are_rejected() {
    for event in sample_events() {
        let stem = event_schema_stem(event.event_type(), event.schema_version());
        let extended = with_field(&event.to_data(), "note", json!("not in the schema"));
        assert_invalid(&stem, &extended, "an unknown field");
    }
}

#[test]
fn missing_fields_are_rejected() {
    for event in sample_events() {
        let stem = event_schema_stem(event.event_type(), event.schema_version());
        let data = event.to_data();
        let fields: Vec<String> = data
            .as_object()
            .expect("event data is a JSON object")
            .keys()
            .cloned()
            .collect();
        for field in fields {
            let mut without = data.clone();
            without
                .as_object_mut()
                .expect("event data is a JSON object")
                .remove(&field);
            assert_invalid(&stem, &without, &format!("a missing {field}"));
        }
    }
}

#[test]
fn star_counts_outside_fragment_limits_are_rejected() {
    let purchase = sample_of("PurchaseRequested");
    for (bad, why) in [
        (json!(10), "10 stars"),
        (json!(49), "49 stars"),
        (json!(1_000_001), "more than 1000000 stars"),
        (json!(100.5), "a fractional star count"),
        (json!("100"), "a star count given as a string"),
    ] {
        assert_invalid(
            "PurchaseRequested.v2",
            &with_field(&purchase, "stars", bad),
            why,
        );
    }
}

#[test]
fn malformed_ids_currencies_recipients_and_postings_are_rejected() {
    let purchase = sample_of("PurchaseRequested");
    let stem = "PurchaseRequested.v2";
    assert_invalid(
        stem,
        &with_field(&purchase, "purchase_id", json!("not-a-uuid")),
        "a purchase id that is not a UUID",
    );
    assert_invalid(
        stem,
        &with_field(&purchase, "currency", json!("ton")),
        "a lower-case currency code",
    );
    assert_invalid(
        stem,
        &with_field(&purchase, "recipient", json!("@bob_the_gift")),
        "a recipient with the leading @",
    );
    assert_invalid(
        stem,
        &with_field(&purchase, "recipient", json!("bob")),
        "a recipient shorter than 4 characters",
    );
    assert_invalid(
        stem,
        &with_field(&purchase, "deliver_to", json!("bob")),
        "a delivery name shorter than 4 characters",
    );
    assert_invalid(
        stem,
        &with_field(&purchase, "deliver_to", json!(null)),
        "an order that names nobody to deliver to",
    );
    let postings = purchase["postings"].clone();
    let mut bad_account = postings.clone();
    bad_account[0]["account"] = json!("customer:0:available");
    assert_invalid(
        stem,
        &with_field(&purchase, "postings", bad_account),
        "a posting on customer 0",
    );
    let mut numeric_leg = postings.clone();
    numeric_leg[1]["amount"] = json!(3.75);
    assert_invalid(
        stem,
        &with_field(&purchase, "postings", numeric_leg),
        "a posting amount that is a JSON number",
    );
    assert_invalid(
        stem,
        &with_field(&purchase, "postings", json!([postings[0].clone()])),
        "a single posting leg",
    );

    let settled = sample_of("RechargeSettled");
    assert_valid("RechargeSettled.v2", &settled);
    assert_invalid(
        "RechargeSettled.v2",
        &with_field(&settled, "status", json!("paid_partial")),
        "a status that does not credit the balance",
    );
    assert_invalid(
        "RechargeSettled.v2",
        &with_field(&settled, "debt_repaid", json!("-1")),
        "a negative debt repayment",
    );
    // A v1 settlement (no partial, debt or resolution) still matches v1.
    let mut v1 = settled.clone();
    for field in ["partial", "debt_repaid", "resolution"] {
        v1.as_object_mut().unwrap().remove(field);
    }
    assert_valid("RechargeSettled.v1", &v1);
    let review = sample_of("RechargeReviewRequired");
    assert_invalid(
        "RechargeReviewRequired.v1",
        &with_field(&review, "reason", json!("felt_like_it")),
        "a review reason the ledger does not know",
    );
    let reversed = sample_of("RechargeReversed");
    assert_invalid(
        "RechargeReversed.v1",
        &with_field(&reversed, "reversed", json!("0")),
        "a reversal of nothing",
    );
    let registered = sample_of("UserRegistered");
    assert_invalid(
        "UserRegistered.v2",
        &with_field(&registered, "user_id", json!(0)),
        "user id 0",
    );
    let requested = sample_of("RechargeRequested");
    let mut late = requested.clone();
    late["invoice"]["expires_at"] = json!("next tuesday");
    assert_invalid(
        "RechargeRequested.v1",
        &late,
        "an expiry that is not a date-time",
    );
}

// ---- The schema files themselves ---------------------------------------------------------

/// Keywords whose meaning is the same in draft 7 and draft 2020-12, plus annotations.
const PORTABLE_KEYWORDS: &[&str] = &[
    "$schema",
    "title",
    "description",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "enum",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "not",
];

fn all_schema_stems() -> Vec<String> {
    let mut stems = vec!["EventMetadata".to_owned()];
    for &(event_type, current) in CURRENT_VERSIONS {
        for version in 1..=current {
            stems.push(event_schema_stem(event_type, version));
        }
    }
    stems
}

/// Checks one (sub)schema and everything below it; `at` names it in failure messages. Every
/// subschema must be described, except the bare `{"pattern": …}` under a `not`.
fn check_portable_and_closed(schema: &Value, at: &str, must_describe: bool) {
    let object = schema
        .as_object()
        .unwrap_or_else(|| panic!("{at} is not a schema object"));
    for (keyword, value) in object {
        assert!(
            PORTABLE_KEYWORDS.contains(&keyword.as_str()),
            "{at} uses {keyword:?}, which is not in the draft 7 / 2020-12 common subset"
        );
        match keyword.as_str() {
            "properties" => {
                let properties = value
                    .as_object()
                    .unwrap_or_else(|| panic!("{at}.properties is not an object"));
                for (name, subschema) in properties {
                    check_portable_and_closed(subschema, &format!("{at}.{name}"), true);
                }
            }
            "items" => check_portable_and_closed(value, &format!("{at}[]"), true),
            "not" => check_portable_and_closed(value, &format!("{at}(not)"), false),
            _ => {}
        }
    }
    assert!(
        !must_describe || object.get("description").and_then(Value::as_str).is_some(),
        "{at} has no description"
    );
    if object.get("type") == Some(&json!("object")) {
        assert_eq!(
            object.get("additionalProperties"),
            Some(&json!(false)),
            "{at} must set additionalProperties: false"
        );
        let declared: BTreeSet<&str> = object
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let required: BTreeSet<&str> = object
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(required, declared, "{at} must require every property");
    }
}

#[test]
fn schemas_declare_draft_2020_12() {
    for stem in all_schema_stems() {
        assert_eq!(
            load_schema(&stem)["$schema"],
            json!(DRAFT_2020_12),
            "{stem} must declare draft 2020-12"
        );
    }
}

#[test]
fn schemas_use_only_keywords_shared_by_draft_7_and_2020_12() {
    for stem in all_schema_stems() {
        check_portable_and_closed(&load_schema(&stem), &stem, true);
    }
}
