//! What auditors run: verify the log and the read models, balances at a past moment, export.
//!
//! `verify` makes one pass over the log: the ledger's own audit (hash chain, balanced
//! postings, trial balance, account invariants) and, beside it, a fresh in-memory replay of
//! every read model. Each table is then compared row by row with that replay at the table's
//! own checkpoint, read in the same snapshot as the table (so the two agree, while the
//! projectors keep running).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use starledger_ledger::audit::{AuditReport, LogAudit};
use std::sync::Arc;

use starledger_ledger::store::{EventStore, RecordedEvent};

use crate::pages::PageReader;

use crate::model::{Page, Table};
use crate::rows::BalanceRow;
use crate::runtime::{decode_page, ProjectionError};
use crate::store::{ModelRow, ReadStore};

/// Events read per page by auditors.
const PAGE: usize = 10_000;

/// One way a read model differs from the replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub table: Table,
    pub key: String,
    /// What the replay says the row should be (`None`: no such row).
    pub expected: Option<String>,
    /// What the table holds (`None`: missing).
    pub found: Option<String>,
}

/// The result of `audit verify`.
#[derive(Debug)]
pub struct VerifyReport {
    pub ledger: AuditReport,
    /// Each table's checkpoint and the differences found there.
    pub tables: BTreeMap<Table, (u64, Vec<Difference>)>,
    pub elapsed: Duration,
}

impl VerifyReport {
    pub fn is_sound(&self) -> bool {
        self.ledger.is_sound() && self.tables.values().all(|(_, d)| d.is_empty())
    }
}

/// Differences kept per table; more are counted by the caller from the report's length.
const MAX_DIFFERENCES: usize = 100;

/// Compares one row found in a table with the replay's row of the same key (taking it out of
/// the replay).
fn check_row<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
    table: Table,
    expected: &mut BTreeMap<K, V>,
    key: K,
    found: V,
    out: &mut Vec<Difference>,
) {
    let want = expected.remove(&key);
    if want.as_ref() != Some(&found) && out.len() < MAX_DIFFERENCES {
        out.push(Difference {
            table,
            key: format!("{key:?}"),
            expected: want.map(|v| format!("{v:?}")),
            found: Some(format!("{found:?}")),
        });
    }
}

/// Reports the replay's rows that the table did not have.
fn report_missing<K: Ord + std::fmt::Debug, V: std::fmt::Debug>(
    table: Table,
    expected: &mut BTreeMap<K, V>,
    out: &mut Vec<Difference>,
) {
    for (key, want) in std::mem::take(expected) {
        if out.len() >= MAX_DIFFERENCES {
            break;
        }
        out.push(Difference {
            table,
            key: format!("{key:?}"),
            expected: Some(format!("{want:?}")),
            found: None,
        });
    }
}

/// Verifies the log and, when `read` is given, every live read model.
pub async fn verify(
    events: &Arc<dyn EventStore>,
    read: Option<&dyn ReadStore>,
) -> Result<VerifyReport, ProjectionError> {
    let started = Instant::now();
    // One read-only snapshot for all the tables: each is compared at the checkpoint it
    // reflects, and the projectors keep running meanwhile.
    let mut snapshot = match read {
        Some(read) => Some(read.snapshot().await?),
        None => None,
    };
    let mut checkpoints: BTreeMap<Table, u64> = BTreeMap::new();
    if let Some(tx) = snapshot.as_mut() {
        for table in Table::ALL {
            checkpoints.insert(table, tx.checkpoint(table.name()).await?);
        }
    }

    let mut audit = LogAudit::default();
    let mut replay = Page::default();
    let mut pages = PageReader::start(events.clone(), 0, PAGE);
    while let Some(recorded) = pages.next().await? {
        for event in &recorded {
            audit.check(event);
        }
        if !checkpoints.is_empty() {
            // Events that do not decode are reported by the ledger audit; skip them here.
            let projected = decode_page(&recorded).unwrap_or_else(|_| {
                recorded
                    .iter()
                    .filter_map(|e| decode_page(std::slice::from_ref(e)).ok())
                    .flatten()
                    .collect()
            });
            for p in &projected {
                for (table, checkpoint) in &checkpoints {
                    if p.position <= *checkpoint {
                        replay.apply(*table, p);
                    }
                }
            }
        }
    }

    // Stream each table past the replay: matching rows leave the replay, so memory holds
    // the replay only, and whatever is left of it afterwards is missing from the table.
    let mut tables = BTreeMap::new();
    if let Some(tx) = snapshot.as_mut() {
        for (table, checkpoint) in checkpoints {
            let mut differences = Vec::new();
            tx.scan(table, &mut |row| match row {
                ModelRow::User(found) => check_row(
                    table,
                    &mut replay.users,
                    found.user_id,
                    found,
                    &mut differences,
                ),
                ModelRow::Balance(found) => {
                    let key = (found.user_id, found.currency.clone());
                    check_row(table, &mut replay.balances, key, found, &mut differences)
                }
                ModelRow::Transaction(found) => check_row(
                    table,
                    &mut replay.transactions,
                    found.id,
                    found,
                    &mut differences,
                ),
            })
            .await?;
            match table {
                Table::Users => report_missing(table, &mut replay.users, &mut differences),
                Table::Balances => report_missing(table, &mut replay.balances, &mut differences),
                Table::Transactions => {
                    report_missing(table, &mut replay.transactions, &mut differences)
                }
            }
            tables.insert(table, (checkpoint, differences));
        }
    }
    Ok(VerifyReport {
        ledger: audit.finish(),
        tables,
        elapsed: started.elapsed(),
    })
}

/// Every user's balance as it stood at `at`, by replaying the events recorded until then.
pub async fn balances_at(
    events: &Arc<dyn EventStore>,
    at: DateTime<Utc>,
) -> Result<Vec<BalanceRow>, ProjectionError> {
    let mut replay = Page::default();
    let mut pages = PageReader::start(events.clone(), 0, PAGE);
    while let Some(recorded) = pages.next().await? {
        let until: Vec<_> = recorded
            .into_iter()
            .filter(|e| e.recorded_at <= at)
            .collect();
        for p in decode_page(&until)? {
            replay.apply(Table::Balances, &p);
        }
    }
    Ok(replay.balances.into_values().collect())
}

/// One event, with its hashes, as the JSON object an export line holds.
pub fn export_line(e: &RecordedEvent) -> Result<Value, ProjectionError> {
    let unreadable = |error: serde_json::Error| ProjectionError::Undecodable {
        position: e.position,
        reason: format!("stored JSON does not parse: {error}"),
    };
    Ok(json!({
        "position": e.position,
        "stream_id": e.stream_id,
        "stream_version": e.stream_version,
        "event_id": e.event_id,
        "event_type": e.event_type,
        "schema_version": e.schema_version,
        "data": e.data_value().map_err(unreadable)?,
        "metadata": e.metadata_value().map_err(unreadable)?,
        "recorded_at": e.recorded_at,
        "prev_hash": e.prev_hash.to_hex(),
        "hash": e.hash.to_hex(),
    }))
}

/// Writes every event, with its hashes, as one JSON object per line. Returns the count.
pub async fn export(
    events: &Arc<dyn EventStore>,
    from: u64,
    out: &mut impl Write,
) -> Result<u64, ProjectionError> {
    let mut count = 0;
    let mut pages = PageReader::start(events.clone(), from, PAGE);
    while let Some(recorded) = pages.next().await? {
        for e in &recorded {
            let line = export_line(e)?;
            writeln!(out, "{line}").map_err(|error| ProjectionError::Undecodable {
                position: e.position,
                reason: format!("cannot write the export: {error}"),
            })?;
            count += 1;
        }
    }
    Ok(count)
}
