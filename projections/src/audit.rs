//! What auditors run: verify the log and the read models, balances at a past moment, export.
//!
//! `verify` makes one pass over the log: the ledger's own audit (hash chain, balanced
//! postings, trial balance, account invariants; hashed and decoded on worker threads, see
//! `starledger_ledger::parallel_audit`) and, beside it, a fresh in-memory replay of
//! the read models. [`verify_checkpointed`] (the CLI's `audit verify`) lets the ledger's audit
//! start after the last verified checkpoint and records a new one after a sound run (see
//! `starledger_ledger::checkpoint`); the read models are still compared with a replay of the
//! whole log. Each table is then compared row by row with that replay at the table's
//! own checkpoint, read in the same snapshot as the table (so the two agree, while the
//! projectors keep running).
//!
//! Memory: the replay of a large log does not fit at once (every transaction row of the
//! shop's history), so it is split into [`ReplaySettings::events_per_pass`]-sized shares by a
//! hash of each row's key. The first pass runs the ledger's audit alone; each further pass
//! reads the log again (up to the tables' checkpoints) and replays one share, and each table
//! is scanned once per pass, comparing only the rows of that share. A log that fits one pass
//! is read once, the replay beside the audit, as before. The ledger's own audit keeps each
//! account's state (every recharge and purchase id) for its whole pass; that part is the
//! ledger's and stays whole, but it is dropped before any table is compared. `balances_at` splits its replay the same way and hands each
//! share's rows on in key order.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use starledger_ledger::audit::{AuditReport, LogAudit};
use starledger_ledger::checkpoint::{self, Stored};
use starledger_ledger::events::AccountEvent;
use starledger_ledger::parallel_audit::{self, ParallelAudit};
use starledger_ledger::postings::LedgerAccount;
use starledger_ledger::store::{EventStore, RecordedEvent, VerifiedCheckpoint};
use uuid::Uuid;

use crate::model::{Page, Projected, Table};
use crate::pages::PageReader;
use crate::rows::BalanceRow;
use crate::runtime::{decode_page, ProjectionError};
use crate::store::{ModelRow, ReadStore, ReadTx};

/// Events read per page by auditors.
const PAGE: usize = 10_000;

/// How much of the log one replay pass may hold in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplaySettings {
    /// A log of more events than this is replayed in several passes, each holding about this
    /// many events' rows. `u64::MAX`: always one pass.
    pub events_per_pass: u64,
}

impl Default for ReplaySettings {
    fn default() -> Self {
        Self {
            events_per_pass: 250_000,
        }
    }
}

impl ReplaySettings {
    /// Passes for a log of `events` events.
    fn passes(self, events: u64) -> u64 {
        events.div_ceil(self.events_per_pass.max(1)).max(1)
    }
}

/// The rows one pass replays: those whose key hashes to `index` modulo `of`.
#[derive(Debug, Clone, Copy)]
struct Share {
    index: u64,
    of: u64,
}

/// Spreads keys (Telegram ids are not uniform) before they are split into shares.
fn mix(key: u64) -> u64 {
    let key = (key ^ (key >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    key ^ (key >> 33)
}

impl Share {
    fn holds(self, key: u64) -> bool {
        self.of <= 1 || mix(key) % self.of == self.index
    }

    fn user(self, user_id: i64) -> bool {
        self.holds(user_id as u64)
    }

    fn transaction(self, id: Uuid) -> bool {
        let (high, low) = id.as_u64_pair();
        self.holds(high ^ low)
    }

    fn row(self, row: &ModelRow) -> bool {
        match row {
            ModelRow::User(row) => self.user(row.user_id),
            ModelRow::Balance(row) => self.user(row.user_id),
            ModelRow::Transaction(row) => self.transaction(row.id),
        }
    }
}

/// Applies one event to the rows of `table` that belong to `share`, and to no other row: the
/// rows of a share come out exactly as a whole replay would leave them.
fn apply_share(replay: &mut Page, table: Table, share: Share, p: &Projected) {
    if share.of <= 1 {
        return replay.apply(table, p);
    }
    match table {
        Table::Users => {
            let owner = match &p.event {
                AccountEvent::UserRegistered(e) => Some(e.user_id.get()),
                AccountEvent::ProfileUpdated(_) => Some(p.user_id),
                _ => None,
            };
            if owner.is_some_and(|owner| share.user(owner)) {
                replay.apply(table, p);
            }
        }
        Table::Balances => {
            let owners = || {
                p.event
                    .postings()
                    .iter()
                    .filter_map(|posting| match posting.account {
                        LedgerAccount::CustomerAvailable(owner)
                        | LedgerAccount::CustomerReserved(owner) => Some((owner.get(), posting)),
                        _ => None,
                    })
            };
            if !owners().any(|(owner, _)| share.user(owner)) {
                return;
            }
            replay.apply(table, p);
            // A posting to a customer of another share (never in a sound log) leaves no row.
            for (owner, posting) in owners().filter(|(owner, _)| !share.user(*owner)) {
                replay
                    .balances
                    .remove(&(owner, posting.currency.to_string()));
            }
        }
        Table::Transactions => {
            if crate::model::transaction_row(&p.event).is_some_and(|id| share.transaction(id)) {
                replay.apply(table, p);
            }
        }
    }
}

/// Decodes a page for the replay. Events that do not decode are reported by the ledger
/// audit; they are skipped here.
fn decode_for_replay(recorded: &[RecordedEvent]) -> Vec<Projected> {
    decode_page(recorded).unwrap_or_else(|_| {
        recorded
            .iter()
            .filter_map(|e| decode_page(std::slice::from_ref(e)).ok())
            .flatten()
            .collect()
    })
}

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
    /// Which part of the log the ledger's audit checked (`ledger.events` counts it).
    pub mode: VerifyMode,
    /// The verified checkpoint this run recorded: its position, or why recording failed.
    /// `None`: none was to be recorded (checkpoints ignored, or the run not sound).
    pub recorded: Option<Result<u64, String>>,
    /// The ledger's audit. Its `accounts` are left empty: they are dropped before the tables
    /// are compared, so the two never share memory.
    pub ledger: AuditReport,
    /// Each table's checkpoint and the differences found there.
    pub tables: BTreeMap<Table, (u64, Vec<Difference>)>,
    pub elapsed: Duration,
    /// How many times the log was read (see [`ReplaySettings`]).
    pub passes: u64,
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

/// Streams each table past one share of the replay: matching rows leave the replay, so
/// memory holds that share only, and whatever is left of it afterwards is missing from the
/// table. Rows of other shares are skipped (their pass compares them).
async fn compare_share(
    tx: &mut dyn ReadTx,
    share: Share,
    mut replay: Page,
    tables: &mut BTreeMap<Table, (u64, Vec<Difference>)>,
) -> Result<(), ProjectionError> {
    for (table, (_, differences)) in tables.iter_mut() {
        let table = *table;
        tx.scan(table, &mut |row| {
            if !share.row(&row) {
                return;
            }
            match row {
                ModelRow::User(found) => {
                    check_row(table, &mut replay.users, found.user_id, found, differences)
                }
                ModelRow::Balance(found) => {
                    let key = (found.user_id, found.currency.clone());
                    check_row(table, &mut replay.balances, key, found, differences)
                }
                ModelRow::Transaction(found) => check_row(
                    table,
                    &mut replay.transactions,
                    found.id,
                    found,
                    differences,
                ),
            }
        })
        .await?;
        match table {
            Table::Users => report_missing(table, &mut replay.users, differences),
            Table::Balances => report_missing(table, &mut replay.balances, differences),
            Table::Transactions => report_missing(table, &mut replay.transactions, differences),
        }
    }
    Ok(())
}

/// Folds decoded events into the share's replay of every table, each up to its checkpoint.
fn replay_events(
    replay: &mut Page,
    share: Share,
    checkpoints: &BTreeMap<Table, (u64, Vec<Difference>)>,
    projected: &[Projected],
) {
    for p in projected {
        for (table, (checkpoint, _)) in checkpoints {
            if p.position <= *checkpoint {
                apply_share(replay, *table, share, p);
            }
        }
    }
}

/// Verifies the log and, when `read` is given, every live read model.
pub async fn verify(
    events: &Arc<dyn EventStore>,
    read: Option<&dyn ReadStore>,
) -> Result<VerifyReport, ProjectionError> {
    verify_with(events, read, ReplaySettings::default(), |_, _| {}).await
}

/// [`verify`], telling `progress` (events read so far, events it expects to read in all)
/// after each page. The whole log, always: no verified checkpoint is read or written (that is
/// [`verify_checkpointed`]).
pub async fn verify_with(
    events: &Arc<dyn EventStore>,
    read: Option<&dyn ReadStore>,
    settings: ReplaySettings,
    progress: impl FnMut(u64, u64) + Send,
) -> Result<VerifyReport, ProjectionError> {
    verify_checkpointed(events, read, settings, Checkpoints::Ignore, progress).await
}

/// What a verify does with verified checkpoints (see `starledger_ledger::checkpoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoints {
    /// Neither read nor write one: the whole log, as [`verify_with`] (the HTTP job).
    Ignore,
    /// Check the log from the newest usable checkpoint on (the whole log when there is none),
    /// and record a new one if the run is sound (`audit verify`).
    Resume,
    /// Check the whole log, and record a new checkpoint if the run is sound
    /// (`audit verify --full`).
    Full,
}

/// Why the log was checked from its first event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FullReason {
    /// The caller asked for it (`--full`, or a verify that does not use checkpoints).
    Asked,
    /// No checkpoint has been recorded.
    NoCheckpoint,
    /// The newest checkpoint cannot be resumed from (other version, state that does not
    /// match its hash, …); the text says why.
    Unusable { position: u64, why: String },
    /// The log no longer matches the newest checkpoint: a finding, and the whole log checked.
    CheckpointDiffers { position: u64 },
}

/// Which part of the log the ledger's audit checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyMode {
    Full(FullReason),
    /// From the event after `from`, a checkpoint recorded at `verified_at`.
    Incremental {
        from: u64,
        verified_at: DateTime<Utc>,
    },
}

impl std::fmt::Display for VerifyMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyMode::Incremental { from, verified_at } => write!(
                f,
                "incremental from checkpoint at {from} (verified {}); events up to {from} not re-checked (--full does)",
                verified_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            VerifyMode::Full(FullReason::Asked) => f.write_str("full from position 1"),
            VerifyMode::Full(FullReason::NoCheckpoint) => {
                f.write_str("full from position 1 (no verified checkpoint yet)")
            }
            VerifyMode::Full(FullReason::Unusable { position, why }) => write!(
                f,
                "full from position 1 (the checkpoint at {position} is not usable: {why})"
            ),
            VerifyMode::Full(FullReason::CheckpointDiffers { position }) => write!(
                f,
                "full from position 1 (the log does not match the checkpoint at {position})"
            ),
        }
    }
}

/// Where a verify starts its audit of the log.
struct Start {
    /// The last position not checked by this run (0: from the first event).
    after: u64,
    audit: LogAudit,
    mode: VerifyMode,
}

/// Picks where to start: the newest checkpoint if it can be trusted, else the first event.
/// Either way, unless checkpoints are ignored, the log is first checked against the newest
/// checkpoint: a log that no longer matches it is a finding, `--full` or not (a whole run
/// cannot see a history rewritten with its chain recomputed; the checkpoint can).
async fn start(
    events: &Arc<dyn EventStore>,
    checkpoints: Checkpoints,
) -> Result<Start, ProjectionError> {
    let full = |reason| Start {
        after: 0,
        audit: LogAudit::default(),
        mode: VerifyMode::Full(reason),
    };
    let none = match checkpoints {
        Checkpoints::Ignore => return Ok(full(FullReason::Asked)),
        Checkpoints::Full => FullReason::Asked,
        Checkpoints::Resume => FullReason::NoCheckpoint,
    };
    let checkpoint = match events.latest_verified_checkpoint().await {
        Ok(Some(checkpoint)) if checkpoint.position > 0 => checkpoint,
        Ok(_) => return Ok(full(none)),
        // A PostgreSQL database not yet migrated to the checkpoints table, say.
        Err(error) => {
            return Ok(full(FullReason::Unusable {
                position: 0,
                why: format!("cannot read checkpoints: {error}"),
            }))
        }
    };
    let position = checkpoint.position;
    let head = events.head().await?.position;
    let at = events.read_all(position - 1, 1).await?;
    let unusable = |why: String| full(FullReason::Unusable { position, why });
    match checkpoint::check_stored(&checkpoint, at.first(), head) {
        Stored::Matches => {}
        Stored::Unusable(why) => return Ok(unusable(why.to_string())),
        Stored::Differs(finding) => {
            let mut start = full(FullReason::CheckpointDiffers { position });
            start.audit.add_finding(finding);
            return Ok(start);
        }
    }
    if checkpoints == Checkpoints::Full {
        return Ok(full(FullReason::Asked));
    }
    match checkpoint::open_state(&checkpoint) {
        Ok(state) => Ok(Start {
            after: position,
            audit: LogAudit::resume(position, checkpoint.head_hash, state.totals, state.accounts),
            mode: VerifyMode::Incremental {
                from: position,
                verified_at: checkpoint.verified_at,
            },
        }),
        Err(why) => Ok(unusable(why.to_string())),
    }
}

/// [`verify_with`], with verified checkpoints used as `checkpoints` says. Only the ledger's
/// audit of the log starts from a checkpoint; the read models are always compared with a
/// replay of the whole log.
pub async fn verify_checkpointed(
    events: &Arc<dyn EventStore>,
    read: Option<&dyn ReadStore>,
    settings: ReplaySettings,
    checkpoints: Checkpoints,
    mut progress: impl FnMut(u64, u64) + Send,
) -> Result<VerifyReport, ProjectionError> {
    let started = Instant::now();
    let Start { after, audit, mode } = start(events, checkpoints).await?;
    // One read-only snapshot for all the tables: each is compared at the checkpoint it
    // reflects, and the projectors keep running meanwhile.
    let mut snapshot = match read {
        Some(read) => Some(read.snapshot().await?),
        None => None,
    };
    let mut tables: BTreeMap<Table, (u64, Vec<Difference>)> = BTreeMap::new();
    if let Some(tx) = snapshot.as_mut() {
        for table in Table::ALL {
            tables.insert(table, (tx.checkpoint(table.name()).await?, Vec::new()));
        }
    }
    let last_checkpoint = tables.values().map(|(c, _)| *c).max().unwrap_or(0);
    let shares = settings.passes(last_checkpoint);
    // A replay that fits one pass runs beside the ledger's audit; a larger one runs in passes
    // of its own after it, so the audit's accounts and a share of the replay never meet.
    let replay_first = shares == 1 && !tables.is_empty();
    // The replay beside the audit needs the log from its start, the audit only after `after`.
    let read_from = if replay_first { 0 } else { after };
    let head = events.head().await?.position;
    let mut total = head.saturating_sub(read_from)
        + if replay_first {
            0
        } else {
            shares * last_checkpoint
        };
    let mut done = 0;
    let mut count = |read: usize, progress: &mut dyn FnMut(u64, u64)| {
        done += read as u64;
        total = total.max(done);
        progress(done, total);
    };

    let mut audit = ParallelAudit::start(audit, parallel_audit::default_workers());
    let mut replay = Page::default();
    let whole = Share { index: 0, of: 1 };
    let mut pages = PageReader::start(events.clone(), read_from, PAGE);
    while let Some(mut recorded) = pages.next().await? {
        let read = recorded.len();
        if replay_first {
            replay_events(&mut replay, whole, &tables, &decode_for_replay(&recorded));
        }
        // Positions are increasing within a page: what the audit already trusts is a prefix.
        let trusted = recorded.partition_point(|e| e.position <= after);
        recorded.drain(..trusted);
        audit.push(recorded).await?;
        count(read, &mut progress);
    }
    drop(pages);
    let mut ledger = audit.finish().await?;
    // The state to resume from next time, taken before the accounts are dropped; recorded
    // only if the whole run is sound.
    let state =
        (checkpoints != Checkpoints::Ignore && ledger.is_sound() && ledger.head_position > 0)
            .then(|| checkpoint::encode_state(&ledger.totals, &ledger.accounts));
    ledger.accounts = HashMap::new();
    let mut passes = 1;

    if let Some(tx) = snapshot.as_mut() {
        if replay_first {
            compare_share(tx.as_mut(), whole, replay, &mut tables).await?;
        } else {
            drop(replay);
            for index in 0..shares {
                let share = Share { index, of: shares };
                let mut replay = Page::default();
                let mut pages = PageReader::until(events.clone(), 0, last_checkpoint, PAGE);
                while let Some(recorded) = pages.next().await? {
                    replay_events(&mut replay, share, &tables, &decode_for_replay(&recorded));
                    count(recorded.len(), &mut progress);
                }
                compare_share(tx.as_mut(), share, replay, &mut tables).await?;
                passes += 1;
            }
        }
    }
    drop(snapshot);
    let mut report = VerifyReport {
        ledger,
        tables,
        elapsed: started.elapsed(),
        passes,
        mode,
        recorded: None,
    };
    if let Some(state) = state.filter(|_| report.is_sound()) {
        let checkpoint = VerifiedCheckpoint {
            position: report.ledger.head_position,
            head_hash: report.ledger.head_hash,
            verified_at: Utc::now(),
            tool_version: checkpoint::TOOL_VERSION.to_owned(),
            state_hash: checkpoint::state_hash(&state),
            state: Some(state),
        };
        report.recorded = Some(
            events
                .record_verified_checkpoint(&checkpoint)
                .await
                .map(|()| checkpoint.position)
                .map_err(|error| error.to_string()),
        );
    }
    Ok(report)
}

/// Every user's balance as it stood at `at`, by replaying the events recorded until then, in
/// one pass (the CLI prints them all).
pub async fn balances_at(
    events: &Arc<dyn EventStore>,
    at: DateTime<Utc>,
) -> Result<Vec<BalanceRow>, ProjectionError> {
    let mut rows = Vec::new();
    let one_pass = ReplaySettings {
        events_per_pass: u64::MAX,
    };
    balances_at_with(events, at, one_pass, |_, _| {}, |_, row| rows.push(row)).await?;
    Ok(rows)
}

/// Every user's balance as it stood at `at`, handed to `emit` one share at a time (see
/// [`ReplaySettings`]): `emit(pass, row)` gets each pass's rows in key order, so memory holds
/// one share's balances. Returns the number of passes; with one, every row came in key order.
pub async fn balances_at_with(
    events: &Arc<dyn EventStore>,
    at: DateTime<Utc>,
    settings: ReplaySettings,
    mut progress: impl FnMut(u64, u64) + Send,
    mut emit: impl FnMut(u64, BalanceRow) + Send,
) -> Result<u64, ProjectionError> {
    let head = events.head().await?.position;
    let passes = settings.passes(head);
    let mut done = 0;
    for index in 0..passes {
        let share = Share { index, of: passes };
        let mut replay = Page::default();
        let mut pages = PageReader::start(events.clone(), 0, PAGE);
        while let Some(recorded) = pages.next().await? {
            done += recorded.len() as u64;
            progress(done, (head * passes).max(done));
            let until: Vec<_> = recorded
                .into_iter()
                .filter(|e| e.recorded_at <= at)
                .collect();
            for p in decode_page(&until)? {
                apply_share(&mut replay, Table::Balances, share, &p);
            }
        }
        for row in replay.balances.into_values() {
            emit(index, row);
        }
    }
    Ok(passes)
}

/// One user's balance as it stood at `at`, by replaying their account's stream up to then
/// (the operators' console asks for one user, where [`balances_at`] replays the whole log).
/// `None`: the account had no balance yet (or does not exist).
pub async fn user_balance_at(
    events: &dyn EventStore,
    user_id: starledger_ledger::ids::UserId,
    at: DateTime<Utc>,
) -> Result<Option<BalanceRow>, ProjectionError> {
    let stream = events.read_stream(user_id.stream().as_str(), 0).await?;
    let until: Vec<_> = stream.into_iter().filter(|e| e.recorded_at <= at).collect();
    let mut replay = Page::default();
    for p in decode_page(&until)? {
        replay.apply(Table::Balances, &p);
    }
    Ok(replay.balances.into_values().next())
}

/// One line of an export (`audit export`, `/v1/audit/events`): a stored event with its
/// hashes. Displays as its JSON object, on one line.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = AuditEvent))]
pub struct EventLine {
    pub position: u64,
    #[cfg_attr(feature = "openapi", schema(pattern = "^account-[1-9][0-9]*$"))]
    pub stream_id: String,
    pub stream_version: u64,
    #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid))]
    pub event_id: starledger_ledger::ids::EventId,
    /// See `schemas/events/`.
    #[cfg_attr(feature = "openapi", schema(example = "RechargeSettled"))]
    pub event_type: String,
    pub schema_version: i32,
    /// The event, as `schemas/events/<event_type>.v<schema_version>.json` describes it.
    pub data: Value,
    /// As `schemas/events/EventMetadata.json` describes it.
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
    /// SHA-256 of the previous event (hex).
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub prev_hash: String,
    /// SHA-256 chaining this event to `prev_hash` (hex).
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub hash: String,
}

impl std::fmt::Display for EventLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = serde_json::to_string(self).map_err(|_| std::fmt::Error)?;
        f.write_str(&text)
    }
}

/// One event, with its hashes, as an export line.
pub fn export_line(e: &RecordedEvent) -> Result<EventLine, ProjectionError> {
    let unreadable = |error: serde_json::Error| ProjectionError::Undecodable {
        position: e.position,
        reason: format!("stored JSON does not parse: {error}"),
    };
    Ok(EventLine {
        position: e.position,
        stream_id: e.stream_id.clone(),
        stream_version: e.stream_version,
        event_id: e.event_id,
        event_type: e.event_type.clone(),
        schema_version: e.schema_version,
        data: e.data_value().map_err(unreadable)?,
        metadata: e.metadata_value().map_err(unreadable)?,
        recorded_at: e.recorded_at,
        prev_hash: e.prev_hash.to_hex(),
        hash: e.hash.to_hex(),
    })
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
