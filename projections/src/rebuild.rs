//! Blue/green rebuild: new tables from position 0, then one atomic swap.
//!
//! 1. Create `<table>_r<millis>` for each table being rebuilt.
//! 2. Replay the whole log into them while the live tables keep serving reads and the live
//!    projectors keep running. The log is read in pages ([`RebuildSettings::page_size`]
//!    events, the next read while this one is folded) and folded into a window of rows held
//!    across pages. When a table's rows in the window reach [`RebuildSettings::window_rows`],
//!    a task writes them (in a transaction of their own, while the next window is folded):
//!    rows that no earlier window wrote go in by `COPY`, the others are upserted. So a row is
//!    written once per window rather than once per page that touches it: a user's balance
//!    row changes on almost every page, and `users` and `balances` are usually written once,
//!    at the end. A row the window does not hold is taken from the window being written, or
//!    loaded from the new table if an earlier window wrote it; the keys written so far are
//!    kept in sets (some 20–30 bytes a row, the one part of memory that grows with the log).
//! 3. In one transaction: lock the live checkpoints (pausing those projectors), apply what
//!    arrived meanwhile, rename the new tables over the live ones, and set the live
//!    checkpoints to where the new tables stand. Readers see the old tables or the new ones,
//!    never a mix and never an error; the paused projectors carry on from the new checkpoint.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use starledger_ledger::store::EventStore;

use uuid::Uuid;

use crate::model::{Needs, Page, Projected, Table};
use crate::pages::PageReader;
use crate::runtime::{apply_events, decode_page, ProjectionError};
use crate::store::ReadStore;

/// Settings of a rebuild.
#[derive(Debug, Clone, Copy)]
pub struct RebuildSettings {
    /// Events read from the log at a time (two pages are in memory at once: one being
    /// folded, one read ahead), and per transaction when catching up before the swap.
    pub page_size: usize,
    /// Rows of one table the window holds before they are written. A table is written when
    /// it reaches this, so `users` and `balances`, whose rows are one or two per user, are
    /// written once at the end unless there are more users than this. Each row takes about
    /// a kilobyte while held, and one window is held while the previous one is written.
    pub window_rows: usize,
}

/// Events per page of a rebuild by default: at 100,000 the pages alone took over 400 MB.
pub const DEFAULT_PAGE_SIZE: usize = 10_000;

impl Default for RebuildSettings {
    fn default() -> Self {
        Self {
            page_size: DEFAULT_PAGE_SIZE,
            window_rows: 20_000,
        }
    }
}

/// What a rebuild did.
#[derive(Debug, Clone)]
pub struct RebuildReport {
    pub tables: Vec<Table>,
    pub events: u64,
    pub position: u64,
    pub elapsed: Duration,
}

/// Rebuilds `tables`. `progress(position, head)` is called after every page.
pub async fn rebuild(
    events: &Arc<dyn EventStore>,
    read: &Arc<dyn ReadStore>,
    tables: &[Table],
    settings: RebuildSettings,
    mut progress: impl FnMut(u64, u64),
) -> Result<RebuildReport, ProjectionError> {
    let started = Instant::now();
    read.ensure_schema().await?;
    let suffix = format!("_r{}", Utc::now().timestamp_millis());
    let mut tx = read.begin().await?;
    for table in tables {
        tx.create_table(*table, &suffix).await?;
    }
    tx.commit().await?;

    let outcome = replay_and_swap(events, read, tables, &suffix, settings, &mut progress).await;
    if outcome.is_err() {
        // Leave nothing half-built behind; the live tables were never touched.
        if let Ok(mut tx) = read.begin().await {
            for table in tables {
                let _ = tx.drop_table(*table, &suffix).await;
            }
            let _ = tx.commit().await;
        }
    }
    let (events_applied, position) = outcome?;
    Ok(RebuildReport {
        tables: tables.to_vec(),
        events: events_applied,
        position,
        elapsed: started.elapsed(),
    })
}

async fn replay_and_swap(
    events: &Arc<dyn EventStore>,
    shared: &Arc<dyn ReadStore>,
    tables: &[Table],
    suffix: &str,
    settings: RebuildSettings,
    progress: &mut impl FnMut(u64, u64),
) -> Result<(u64, u64), ProjectionError> {
    let read = shared.as_ref();
    let mut position = 0;
    let mut applied = 0;
    let mut head = events.head().await?.position;
    // Bulk phase: no locks on anything live. The next page is read while this one is
    // folded, and a full window is written while the next one is folded.
    let phase = Instant::now();
    let mut window = Window::default();
    let mut pages = PageReader::start(events.clone(), 0, settings.page_size);
    let mut waiting = Instant::now();
    while let Some(recorded) = pages.next().await? {
        let waited = waiting.elapsed();
        let Some(last) = recorded.last().map(|e| e.position) else {
            break;
        };
        let folding = Instant::now();
        let projected = decode_page(&recorded)?;
        drop(recorded);
        window
            .load_missing(read, tables, suffix, &projected)
            .await?;
        for p in &projected {
            for table in tables {
                window.rows.apply(*table, p);
            }
        }
        tracing::debug!(elapsed = ?folding.elapsed(), waited = ?waited, "rebuild: page folded");
        let full: Vec<Table> = tables
            .iter()
            .copied()
            .filter(|table| window.rows_of(*table) >= settings.window_rows)
            .collect();
        if !full.is_empty() {
            window.write(shared, &full, suffix).await?;
        }
        applied += projected.len() as u64;
        position = last;
        head = head.max(position);
        progress(position, head);
        waiting = Instant::now();
    }
    window.write(shared, tables, suffix).await?;
    window.finish().await?;

    tracing::info!(events = applied, elapsed = ?phase.elapsed(), "rebuild: bulk load done");
    let phase = Instant::now();
    // Secondary indexes, built once over the loaded rows rather than row by row.
    let mut tx = read.begin().await?;
    for table in tables {
        tx.create_indexes(*table, suffix).await?;
    }
    tx.commit().await?;

    tracing::info!(elapsed = ?phase.elapsed(), "rebuild: tables logged and indexed");
    let phase = Instant::now();
    // Swap phase: pause the live projectors of these tables, catch up, swap.
    let mut tx = read.begin().await?;
    for table in tables {
        tx.lock_checkpoint(table.name()).await?;
    }
    loop {
        let recorded = events.read_all(position, settings.page_size).await?;
        let Some(last) = recorded.last().map(|e| e.position) else {
            break;
        };
        let projected = decode_page(&recorded)?;
        for table in tables {
            apply_events(tx.as_mut(), *table, suffix, &projected).await?;
        }
        applied += recorded.len() as u64;
        position = last;
    }
    for table in tables {
        tx.swap(*table, suffix).await?;
        tx.set_checkpoint(table.name(), position).await?;
    }
    tx.commit().await?;
    tracing::info!(elapsed = ?phase.elapsed(), position, "rebuild: swapped in");
    progress(position, position);
    Ok((applied, position))
}

/// The rows being folded between two writes of a rebuild, the window being written
/// meanwhile, and the keys earlier windows wrote.
#[derive(Default)]
struct Window {
    rows: Page,
    /// The previous window (its new rows, then the rows it upserts), while a task writes it.
    in_flight: Option<(Arc<(Page, Page)>, AbortOnDrop)>,
    /// Users whose balance rows are all in `rows` (loaded, or never written before).
    balances_held: HashSet<i64>,
    written_users: HashSet<i64>,
    written_balances: HashSet<i64>,
    written_transactions: HashSet<Uuid>,
}

impl Window {
    fn rows_of(&self, table: Table) -> usize {
        match table {
            Table::Users => self.rows.users.len(),
            Table::Balances => self.rows.balances.len(),
            Table::Transactions => self.rows.transactions.len(),
        }
    }

    /// Loads the rows these events update that are neither in the window nor created by
    /// the events themselves, but were written by an earlier window: from the window being
    /// written if it holds them (its rows are the newest), else from the new tables.
    async fn load_missing(
        &mut self,
        read: &dyn ReadStore,
        tables: &[Table],
        suffix: &str,
        projected: &[Projected],
    ) -> Result<(), ProjectionError> {
        let mut loads = Vec::new();
        for table in tables {
            let mut needs = Needs::of(*table, projected);
            match table {
                Table::Users => needs.users.retain(|user| {
                    !self.rows.users.contains_key(user) && self.written_users.contains(user)
                }),
                Table::Balances => {
                    needs.balances.retain(|user| {
                        self.balances_held.insert(*user) && self.written_balances.contains(user)
                    });
                }
                Table::Transactions => needs.transactions.retain(|id| {
                    !self.rows.transactions.contains_key(id)
                        && self.written_transactions.contains(id)
                }),
            }
            if let Some((writing, _)) = &self.in_flight {
                for page in [&writing.0, &writing.1] {
                    take_from(page, &mut needs, &mut self.rows);
                }
            }
            if !(needs.users.is_empty()
                && needs.balances.is_empty()
                && needs.transactions.is_empty())
            {
                loads.push((*table, needs));
            }
        }
        if loads.is_empty() {
            return Ok(());
        }
        let mut tx = read.begin().await?;
        for (table, needs) in &loads {
            tx.load(*table, suffix, needs, &mut self.rows).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Hands the window's rows of `tables` to a task that writes them, each table in its own
    /// transaction, side by side (rows no earlier window wrote are copied in, the others
    /// upserted), and empties them in the window. The previous write must have ended first:
    /// windows are written in order, so a row's newest version is written last.
    async fn write(
        &mut self,
        read: &Arc<dyn ReadStore>,
        tables: &[Table],
        suffix: &str,
    ) -> Result<(), ProjectionError> {
        self.finish().await?;
        let mut rows = Page::default();
        for table in tables {
            match table {
                Table::Users => rows.users = std::mem::take(&mut self.rows.users),
                Table::Balances => {
                    rows.balances = std::mem::take(&mut self.rows.balances);
                    self.balances_held.clear();
                }
                Table::Transactions => {
                    rows.transactions = std::mem::take(&mut self.rows.transactions)
                }
            }
        }
        let (new, old) = self.split(rows);
        self.written_users.extend(new.users.keys());
        self.written_balances
            .extend(new.balances.keys().map(|(user, _)| *user));
        self.written_transactions.extend(new.transactions.keys());
        let writing = Arc::new((new, old));
        let (read, tables, suffix) = (read.clone(), tables.to_vec(), suffix.to_owned());
        let rows = writing.clone();
        let task = tokio::spawn(async move {
            let (new, old) = (&rows.0, &rows.1);
            let writes = tables.iter().map(|table| {
                let (read, suffix) = (&read, &suffix);
                async move {
                    let started = Instant::now();
                    let mut tx = read.begin().await?;
                    tx.insert_new(*table, suffix, new).await?;
                    tx.save(*table, suffix, old).await?;
                    tx.commit().await?;
                    tracing::debug!(table = table.name(), elapsed = ?started.elapsed(), "rebuild: window written");
                    Ok::<_, ProjectionError>(())
                }
            });
            futures::future::try_join_all(writes).await.map(drop)
        });
        self.in_flight = Some((writing, AbortOnDrop(task)));
        Ok(())
    }

    /// Waits for the window being written, if any.
    async fn finish(&mut self) -> Result<(), ProjectionError> {
        if let Some((_, mut task)) = self.in_flight.take() {
            match (&mut task.0).await {
                Ok(written) => written?,
                Err(error) => return Err(ProjectionError::WriteTask(error.to_string())),
            }
        }
        Ok(())
    }

    /// The rows no earlier window wrote, and those it did.
    fn split(&self, rows: Page) -> (Page, Page) {
        let (old_users, new_users) =
            (rows.users.into_iter()).partition(|(user, _)| self.written_users.contains(user));
        let (old_balances, new_balances) = (rows.balances.into_iter())
            .partition(|((user, _), _)| self.written_balances.contains(user));
        let (old_transactions, new_transactions) = (rows.transactions.into_iter())
            .partition(|(id, _)| self.written_transactions.contains(id));
        (
            Page {
                users: new_users,
                balances: new_balances,
                transactions: new_transactions,
            },
            Page {
                users: old_users,
                balances: old_balances,
                transactions: old_transactions,
            },
        )
    }
}

/// Moves into `rows` clones of the rows `page` holds that `needs` names, and strikes them
/// from `needs`. A user's balance rows are all in `page` or none are (a window loads all of a
/// user's balances at once).
fn take_from(page: &Page, needs: &mut Needs, rows: &mut Page) {
    take_keys(&page.users, &mut needs.users, &mut rows.users);
    needs.balances.retain(|user| {
        let held: Vec<_> = page
            .balances
            .range((*user, String::new())..)
            .take_while(|((owner, _), _)| owner == user)
            .collect();
        for (key, row) in &held {
            rows.balances.insert((*key).clone(), (*row).clone());
        }
        held.is_empty()
    });
    take_keys(
        &page.transactions,
        &mut needs.transactions,
        &mut rows.transactions,
    );
}

/// Clones into `into` the rows of `from` that `keys` names, and strikes those keys.
fn take_keys<K: Ord + Copy, V: Clone>(
    from: &BTreeMap<K, V>,
    keys: &mut Vec<K>,
    into: &mut BTreeMap<K, V>,
) {
    keys.retain(|key| match from.get(key) {
        Some(row) => {
            into.insert(*key, row.clone());
            false
        }
        None => true,
    });
}

/// A write task that is stopped if the rebuild gives up before it ends, so it cannot keep
/// writing into tables the rebuild is dropping.
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), ProjectionError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
