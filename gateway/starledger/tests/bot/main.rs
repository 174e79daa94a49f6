//! Black-box tests of the Telegram bot: `starledger serve` runs with `TELEGRAM_TOKEN` set and
//! `TELEGRAM_API_URL` pointing at a local fake Bot API (`fake_telegram.rs`), against real
//! PostgreSQL and Redis when `TEST_DATABASE_URL` / `TEST_REDIS_URL` are set (SQLite and
//! in-process caches otherwise; under CI both must be set). Users "type" through the fake's
//! `getUpdates` (or post to the webhook route in webhook mode); what the bot answers is read
//! from the calls it made.

mod answers;
mod fake_telegram;
mod harness;
mod journey;
mod limits;
mod notifications;
mod recipient;
mod repeats;
#[path = "../support/mod.rs"]
#[allow(dead_code)] // each test binary uses its own part of the shared support
mod support;
mod throttled;
mod webhook;
