//! Builds the fulfilment worker `FRAGMENT_MODE` asks for: none (`manual`), one on the sandbox,
//! or one on fragment.com, toncenter and the wallet of `FRAGMENT_SEED_PHRASE` (`live`).
//!
//! Everything that can be wrong with the settings is found here, at start-up, and named by
//! its variable: a wallet that cannot be derived, a ledger currency without a price ceiling.

use std::sync::Arc;

use rust_decimal::Decimal;
use starledger_ledger::commands::Ledger;
use starledger_ledger::money::Currency;
use starledger_ledger::pricing::StarPricing;

use super::client::{FragmentClient, FragmentSettings};
use super::fulfilment::{Fulfilment, FulfilmentSettings};
use super::sandbox::{SandboxFragment, SANDBOX_PAYMENT_ADDRESS};
use super::ton::Nanotons;
use super::toncenter::{Toncenter, ToncenterSettings};
use super::wallet::{PayingWallet, ShopWallet, WalletVersion};
use crate::settings::{FragmentConfig, FragmentMode};
use starledger_outbound::resilience::SystemWallClock;
use starledger_settings::secret::Secret;
use starledger_settings::{problem, ConfigError};

/// The sandbox wallet's seed phrase: a published test vector (Trust Wallet's wallet-core
/// tests), so it can never hold anyone's money by accident. The sandbox chain does not check
/// signatures; the phrase only makes the worker sign as it does in production.
const SANDBOX_SEED_PHRASE: &str = "protect drill sugar gallery note admit input wrist chicken \
    swarm scheme hedgehog orbit ritual glove ski buddy slogan fragile sun delay toy lucky require";

/// The sandbox wallet's balance: plenty, so rehearsals never wait for a top-up.
const SANDBOX_BALANCE: Nanotons = Nanotons(1_000_000 * Nanotons::PER_TON);

/// The worker for this configuration, or `None` in `manual` mode.
pub fn fulfilment(
    config: &FragmentConfig,
    ledger: Arc<Ledger>,
    currency: &Currency,
    pricing: &StarPricing,
) -> Result<Option<Fulfilment>, ConfigError> {
    let unchecked_cost = config.max_ton_per_star.is_none() && *currency != Currency::ton();
    if unchecked_cost && config.mode != FragmentMode::Manual {
        return Err(problem(
            "FRAGMENT_MAX_TON_PER_STAR",
            format!("is required when LEDGER_CURRENCY is {currency}: the worker must know the most it may pay Fragment per star"),
        ));
    }
    let min_wallet_balance = Nanotons::from_ton(config.min_wallet_balance).ok_or_else(|| {
        problem(
            "FRAGMENT_WALLET_MIN_BALANCE",
            "is not a whole number of nanotons",
        )
    })?;
    let mut settings = FulfilmentSettings {
        min_wallet_balance,
        max_ton_per_star: config.max_ton_per_star,
        delivery_alert_after: config.delivery_alert_after,
        session_check_every: config.session_check_every,
        session_expires_at: config.session_expires_at,
        ..FulfilmentSettings::default()
    };
    let (market, chain, wallet): (
        Arc<dyn super::market::StarsMarket>,
        Arc<dyn super::ton::TonChain>,
        _,
    ) = match &config.mode {
        FragmentMode::Manual => {
            tracing::warn!("FRAGMENT_MODE=manual: purchases wait, funds reserved, until an operator marks them delivered or failed (/v1/admin/purchases)");
            return Ok(None);
        }
        FragmentMode::Sandbox => {
            tracing::warn!("FRAGMENT_MODE=sandbox: Stars orders are simulated, no TON moves");
            let sandbox = Arc::new(SandboxFragment::new(
                sandbox_price(pricing),
                SANDBOX_BALANCE,
            ));
            let wallet = wallet(&Secret::new(SANDBOX_SEED_PHRASE), WalletVersion::V4R2)?;
            settings.payment_addresses = vec![SANDBOX_PAYMENT_ADDRESS.to_owned()];
            (sandbox.clone(), sandbox, wallet)
        }
        FragmentMode::Live(live) => {
            let mut market = FragmentSettings::new(live.cookies.clone());
            market.base_url = live.fragment_url.clone();
            market.timeout = config.request_timeout;
            let market = FragmentClient::new(market)
                .map_err(|error| problem("FRAGMENT_API_URL", error.to_string()))?;
            let mut chain =
                ToncenterSettings::new(live.ton_api_key.as_ref().map(|k| k.expose().to_owned()));
            chain.base_url = live.ton_api_url.clone();
            chain.timeout = config.request_timeout;
            let chain =
                Toncenter::new(chain).map_err(|error| problem("TON_API_URL", error.to_string()))?;
            if live.ton_api_key.is_none() {
                tracing::warn!("TON_API_KEY is unset: toncenter allows about one request a second without a key");
            }
            let wallet = wallet(&live.seed_phrase, live.wallet_version)?;
            settings.payment_addresses = live.payment_addresses.clone();
            (Arc::new(market), Arc::new(chain), wallet)
        }
    };
    Ok(Some(Fulfilment {
        ledger,
        market,
        wallet: Arc::new(wallet),
        chain,
        currency: currency.clone(),
        settings,
        clock: Arc::new(SystemWallClock),
    }))
}

fn wallet(phrase: &Secret, version: WalletVersion) -> Result<PayingWallet, ConfigError> {
    // The wallet's errors never contain a word of the phrase.
    ShopWallet::from_seed_phrase(phrase, version)
        .and_then(PayingWallet::new)
        .map_err(|error| problem("FRAGMENT_SEED_PHRASE", error.to_string()))
}

/// The sandbox charges what `STAR_PRICE` says Fragment charges (in TON; a ledger in another
/// currency rehearses with the same number).
fn sandbox_price(pricing: &StarPricing) -> Decimal {
    pricing.price_per_star.value()
}
