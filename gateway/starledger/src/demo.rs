//! `starledger demo`: one account's whole life on the embedded ledger, then an audit.
//!
//! Runs on a SQLite file with no servers and no credentials. Every step goes through the
//! real command handler and event store. The Heleket outcomes are stated by the demo (as the
//! reports the Heleket adapter makes of its webhooks, judged by the ledger's money rules: a
//! credit, a refund reversed into a debt, a payment in the wrong coin sent to review); the
//! Stars orders are fulfilled by the real fulfilment worker against the sandbox Fragment
//! (`FRAGMENT_MODE=sandbox`), which delivers a gift and refunds one nobody can receive.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chrono::{Duration, Utc};
use rust_decimal::Decimal;
use starledger_ledger::account::{AccountCommand, PaymentReport, ReportedOutcome, ReviewDecision};
use starledger_ledger::audit::LogAudit;
use starledger_ledger::commands::{decode, CommandContext, CommandError, Executed, Ledger};
use starledger_ledger::events::{AccountEvent, Actor, Invoice, Stars};
use starledger_ledger::ids::{
    AdjustmentId, IdempotencyKey, PurchaseId, RechargeId, Recipient, UserId, Username,
};
use starledger_ledger::money::{Amount, Currency, SignedAmount};
use starledger_ledger::store::sqlite::SqliteStore;
use starledger_ledger::store::{CommitMode, EventStore};

use crate::config::Config;
use starledger_fulfilment::fulfilment::Worker;
use starledger_fulfilment::settings::{FragmentConfig, FragmentMode};
use starledger_fulfilment::setup;

struct Demo {
    ledger: Arc<Ledger>,
    config: Config,
    user: UserId,
    step: usize,
}

impl Demo {
    fn key(text: &str) -> anyhow::Result<IdempotencyKey> {
        IdempotencyKey::parse(text).context("demo idempotency key")
    }

    async fn run_step(
        &mut self,
        what: &str,
        command: AccountCommand,
        key: &str,
        actor: Actor,
    ) -> anyhow::Result<Result<Executed, CommandError>> {
        self.step += 1;
        let context = CommandContext::new(Self::key(key)?, actor);
        let outcome = self.ledger.execute(self.user, command, &context).await;
        let result = match &outcome {
            Ok(done) if done.replayed => format!(
                "already done: nothing appended (position {})",
                done.position
            ),
            Ok(done) => {
                let types: Vec<&str> = done.events.iter().map(|e| e.event_type()).collect();
                format!("{} at position {}", types.join(", "), done.position)
            }
            Err(CommandError::Rejected(rejection)) => {
                format!("refused ({}): {rejection}", rejection.code())
            }
            Err(other) => return Err(anyhow::anyhow!("step {} failed: {other}", self.step)),
        };
        println!("{:>2}. {what:<58} → {result}", self.step);
        Ok(outcome)
    }

    /// Runs the fulfilment worker on the sandbox Fragment until no purchase is open, and
    /// shows what it recorded.
    async fn fulfil(&mut self, store: &dyn EventStore) -> anyhow::Result<()> {
        let before = store.head().await?.position;
        let pricing = self.config.pricing;
        let config = FragmentConfig {
            mode: FragmentMode::Sandbox,
            request_timeout: std::time::Duration::from_secs(10),
            min_wallet_balance: Decimal::from(10),
            // What the customer pays per star, so the check holds in any ledger currency.
            max_ton_per_star: Some(
                pricing.price_per_star.value()
                    * (Decimal::ONE + pricing.markup_percent / Decimal::ONE_HUNDRED),
            ),
            delivery_alert_after: std::time::Duration::from_secs(600),
            session_check_every: std::time::Duration::from_secs(300),
            session_expires_at: None,
        };
        let fulfilment = setup::fulfilment(
            &config,
            self.ledger.clone(),
            &self.config.currency,
            &pricing,
        )?
        .context("the sandbox has a fulfilment worker")?;
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let mut worker = Worker::new(fulfilment, 0);
        for _ in 0..200 {
            worker.step(store, &stopped).await?;
            if worker.orders.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        anyhow::ensure!(
            worker.orders.is_empty(),
            "the sandbox orders did not finish"
        );
        let recorded = store.read_all(before, 100).await?;
        for event in &recorded {
            self.step += 1;
            let what = match decode(event)? {
                AccountEvent::FragmentOrderPlaced(e) => format!(
                    "Fragment order {} opened, {} TON",
                    e.fragment_request_id, e.ton_amount
                ),
                AccountEvent::FragmentOrderSent(e) => format!(
                    "payment signed (seqno {}), recorded, then sent",
                    e.seqno.unwrap_or_default()
                ),
                AccountEvent::PurchaseCompleted(_) => "stars delivered → capture".into(),
                AccountEvent::PurchaseFailed(e) => {
                    // The reason starts with its code (`recipient_not_found: …`).
                    let code = e.reason.split(':').next().unwrap_or_default();
                    format!("{code} → release (refund)")
                }
                other => other.event_type().to_owned(),
            };
            println!(
                "{:>2}. {:<58} → {} at position {}",
                self.step,
                format!("fulfilment worker: {what}"),
                event.event_type,
                event.position
            );
        }
        Ok(())
    }

    async fn balances(&self) -> anyhow::Result<String> {
        let account = self.ledger.account(self.user).await?;
        let mut shown = format!(
            "available {} {c}, reserved {} {c}",
            account.available.normalize(),
            account.reserved.normalize(),
            c = self.config.currency
        );
        if !account.debt.is_zero() {
            shown.push_str(&format!(
                ", owed {} {}",
                account.debt.normalize(),
                self.config.currency
            ));
        }
        Ok(shown)
    }
}

pub async fn run(config: &Config, db: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let temp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let path = db.unwrap_or_else(|| temp.path().join("demo.db"));
    let store: Arc<dyn EventStore> = Arc::new(
        SqliteStore::open(&path, CommitMode::default())
            .await
            .with_context(|| format!("cannot open {}", path.display()))?,
    );
    let user = UserId::new(1001).context("demo user id")?;
    let mut demo = Demo {
        ledger: Arc::new(Ledger::new(store.clone())),
        config: config.clone(),
        user,
        step: 0,
    };
    let currency = config.currency.clone();
    println!(
        "starledger demo: one account on the embedded ledger ({})\n",
        path.display()
    );

    demo.run_step(
        "/start from Telegram user 1001 (@alice)",
        AccountCommand::Register {
            username: Some("alice".into()),
            language: Some("en".into()),
            currency: currency.clone(),
        },
        "tg:update:1",
        Actor::User(user),
    )
    .await??;

    let recharge_id = RechargeId::derive(user, &Demo::key("tg:update:2")?);
    demo.run_step(
        &format!("/recharge 10 → Heleket invoice for 10 {currency}"),
        AccountCommand::RequestRecharge {
            recharge_id,
            amount: Amount::parse("10")?,
            currency: currency.clone(),
            invoice: Invoice {
                uuid: "demo-invoice-1".into(),
                url: "https://pay.heleket.com/pay/demo-invoice-1".into(),
                expires_at: Utc::now() + Duration::hours(1),
            },
        },
        "tg:update:2",
        Actor::User(user),
    )
    .await??;

    let settle = payment(
        recharge_id,
        "paid_over",
        &currency,
        currency.as_str(),
        "10.5",
    );
    demo.run_step(
        "Heleket webhook: paid_over, 10.5 paid → credit 10.5",
        settle.clone(),
        "heleket:demo-invoice-1:paid_over",
        Actor::Heleket,
    )
    .await??;
    demo.run_step(
        "the same webhook delivered again",
        settle,
        "heleket:demo-invoice-1:paid_over",
        Actor::Heleket,
    )
    .await??;
    println!("    balance: {}", demo.balances().await?);

    let gift = Stars::new(1000)?;
    let gift_id = PurchaseId::derive(user, &Demo::key("tg:update:3")?);
    let price = config.pricing.quote(gift)?;
    demo.run_step(
        &format!("/buy_stars 1000 @bob_gifts, price {price} → reserve"),
        AccountCommand::RequestPurchase {
            purchase_id: gift_id,
            stars: gift,
            recipient: Recipient::Gift(Username::parse("@bob_gifts")?),
            price,
        },
        "tg:update:3",
        Actor::User(user),
    )
    .await??;
    println!("    balance: {}", demo.balances().await?);

    let ghost = Stars::new(500)?;
    let ghost_price = config.pricing.quote(ghost)?;
    demo.run_step(
        &format!("/buy_stars 500 @ghost_notfound, price {ghost_price} → reserve"),
        AccountCommand::RequestPurchase {
            purchase_id: PurchaseId::derive(user, &Demo::key("tg:update:5")?),
            stars: ghost,
            recipient: Recipient::Gift(Username::parse("@ghost_notfound")?),
            price: ghost_price,
        },
        "tg:update:5",
        Actor::User(user),
    )
    .await??;
    println!("    balance: {}", demo.balances().await?);
    demo.fulfil(store.as_ref()).await?;
    println!("    balance: {}", demo.balances().await?);

    let too_many = Stars::new(5000)?;
    demo.run_step(
        &format!("/buy_stars 5000, price {}", config.pricing.quote(too_many)?),
        AccountCommand::RequestPurchase {
            purchase_id: PurchaseId::derive(user, &Demo::key("tg:update:4")?),
            stars: too_many,
            recipient: Recipient::Buyer(Username::parse("@alice")?),
            price: config.pricing.quote(too_many)?,
        },
        "tg:update:4",
        Actor::User(user),
    )
    .await?
    .err()
    .context("the demo expected this purchase to be refused")?;

    demo.run_step(
        "admin carol: +1 goodwill credit, reason recorded",
        AccountCommand::AdjustBalance {
            adjustment_id: AdjustmentId::derive(user, &Demo::key("admin:adj:1")?),
            amount: SignedAmount::parse("1")?,
            currency: currency.clone(),
            admin: "carol".into(),
            reason: "goodwill credit for the failed order".into(),
        },
        "admin:adj:1",
        Actor::Admin("carol".into()),
    )
    .await??;
    println!("    balance: {}", demo.balances().await?);

    demo.run_step(
        "Heleket webhook: refund_paid for the first top-up → reverse",
        payment(
            recharge_id,
            "refund_paid",
            &currency,
            currency.as_str(),
            "10.5",
        ),
        "heleket:demo-invoice-1:refund_paid",
        Actor::Heleket,
    )
    .await??;
    println!("    balance: {}", demo.balances().await?);
    // Refused, so nothing is stored: on a second run over the same file the debt was paid
    // long ago, and the step is shown as such rather than buying for real.
    if demo.ledger.account(user).await?.debt.is_zero() {
        demo.step += 1;
        println!(
            "{:>2}. {:<58} → skipped: no debt is open (the demo ran on this file before)",
            demo.step, "/buy_stars 50 while a debt is open"
        );
    } else {
        demo.run_step(
            "/buy_stars 50 while a debt is open",
            AccountCommand::RequestPurchase {
                purchase_id: PurchaseId::derive(user, &Demo::key("tg:update:6")?),
                stars: Stars::new(50)?,
                recipient: Recipient::Buyer(Username::parse("@alice")?),
                price: config.pricing.quote(Stars::new(50)?)?,
            },
            "tg:update:6",
            Actor::User(user),
        )
        .await?
        .err()
        .context("the demo expected a purchase in debt to be refused")?;
    }

    let second = RechargeId::derive(user, &Demo::key("tg:update:7")?);
    demo.run_step(
        &format!("/recharge 5 → Heleket invoice for 5 {currency}"),
        AccountCommand::RequestRecharge {
            recharge_id: second,
            amount: Amount::parse("5")?,
            currency: currency.clone(),
            invoice: Invoice {
                uuid: "demo-invoice-2".into(),
                url: "https://pay.heleket.com/pay/demo-invoice-2".into(),
                expires_at: Utc::now() + Duration::hours(1),
            },
        },
        "tg:update:7",
        Actor::User(user),
    )
    .await??;
    demo.run_step(
        "Heleket webhook: paid, but 30 USDT → needs review",
        payment(second, "paid", &currency, "USDT", "30"),
        "heleket:demo-invoice-2:paid",
        Actor::Heleket,
    )
    .await??;
    demo.run_step(
        &format!("admin carol reviews: credit 4.9 {currency}, debt first"),
        AccountCommand::ResolveRecharge {
            recharge_id: second,
            decision: ReviewDecision::Credit(Amount::parse("4.9")?),
            admin: "carol".into(),
            reason: "Heleket support converted the USDT to 4.9 TON".into(),
        },
        "admin:resolve:demo-invoice-2",
        Actor::Admin("carol".into()),
    )
    .await??;
    println!("    balance: {}\n", demo.balances().await?);

    print_log_and_verify(store.as_ref()).await
}

/// What the Heleket adapter reports of a webhook: `status`, `paid` of `coin` on an invoice
/// in the ledger's `currency`.
fn payment(
    recharge_id: RechargeId,
    status: &str,
    currency: &Currency,
    coin: &str,
    paid: &str,
) -> AccountCommand {
    let outcome = match status {
        "paid" => ReportedOutcome::Paid,
        "paid_over" => ReportedOutcome::PaidOver,
        _ => ReportedOutcome::Failed,
    };
    AccountCommand::RecordPayment {
        recharge_id,
        report: PaymentReport {
            outcome,
            provider_status: status.into(),
            invoice_currency: Some(currency.to_string()),
            paid_currency: Some(coin.into()),
            paid_amount: Some(paid.into()),
            txid: Some(format!("demo-tx-{status}")),
            facts: serde_json::json!({"status": status, "payer_currency": coin,
                "payment_amount": paid})
            .to_string(),
        },
        overpay_tolerance_percent: 10,
    }
}

async fn print_log_and_verify(store: &dyn EventStore) -> anyhow::Result<ExitCode> {
    println!("event log");
    println!(
        "{:>4}  {:<13} {:>3}  {:<20} {:<14} hash",
        "pos", "stream", "ver", "type", "actor"
    );
    let mut audit = LogAudit::default();
    let mut after = 0;
    loop {
        let page = store.read_all(after, 1_000).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for event in &page {
            let metadata = event.metadata_value().unwrap_or_default();
            let actor = metadata
                .get("actor")
                .and_then(|a| a.as_str())
                .unwrap_or("?");
            println!(
                "{:>4}  {:<13} {:>3}  {:<20} {:<14} {}…",
                event.position,
                event.stream_id,
                event.stream_version,
                event.event_type,
                actor,
                &event.hash.to_hex()[..16]
            );
            audit.check(event);
        }
    }
    let report = audit.finish();

    println!("\nledger accounts (double entry)");
    for (account, currency, balance) in report.trial_balance.accounts() {
        if !balance.is_zero() {
            println!(
                "  {:<28} {:>14} {currency}",
                account.to_string(),
                balance.normalize().to_string()
            );
        }
    }
    for (currency, total) in &report.totals {
        println!(
            "  {:<28} {:>14} {currency}",
            "trial balance (must be 0)",
            total.normalize().to_string()
        );
    }

    println!("\nverification");
    println!(
        "  hash chain: {} events, head {}…",
        report.events,
        &report.head_hash.to_hex()[..16]
    );
    let trial_zero = report.totals.values().all(Decimal::is_zero);
    println!(
        "  trial balance zero: {}",
        if trial_zero { "yes" } else { "NO" }
    );
    if report.is_sound() {
        println!("  result: the ledger is sound");
        Ok(ExitCode::SUCCESS)
    } else {
        for finding in &report.findings {
            println!("  FINDING: {finding}");
        }
        Ok(ExitCode::FAILURE)
    }
}
