//! Blue/green rebuild: new tables from position 0, then one atomic swap.
//!
//! 1. Create `<table>_r<millis>` for each table being rebuilt.
//! 2. Replay the whole log into them in large pages, one transaction per page, while the live
//!    tables keep serving reads and the live projectors keep running.
//! 3. In one transaction: lock the live checkpoints (pausing those projectors), apply what
//!    arrived meanwhile, rename the new tables over the live ones, and set the live
//!    checkpoints to where the new tables stand. Readers see the old tables or the new ones,
//!    never a mix and never an error; the paused projectors carry on from the new checkpoint.

use std::time::{Duration, Instant};

use std::sync::Arc;

use chrono::Utc;
use starledger_ledger::store::EventStore;

use crate::model::Table;
use crate::pages::PageReader;
use crate::runtime::{apply_events, decode_page, ProjectionError};
use crate::store::ReadStore;

/// Settings of a rebuild.
#[derive(Debug, Clone, Copy)]
pub struct RebuildSettings {
    /// Events per transaction while replaying.
    pub page_size: usize,
}

impl Default for RebuildSettings {
    fn default() -> Self {
        Self { page_size: 100_000 }
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
    read: &dyn ReadStore,
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
    read: &dyn ReadStore,
    tables: &[Table],
    suffix: &str,
    settings: RebuildSettings,
    progress: &mut impl FnMut(u64, u64),
) -> Result<(u64, u64), ProjectionError> {
    let mut position = 0;
    let mut applied = 0;
    let mut head = events.head().await?.position;
    // Bulk phase: no locks on anything live. The next page is read while this one is
    // written, and each table is written in its own transaction, side by side.
    let phase = Instant::now();
    let mut pages = PageReader::start(events.clone(), 0, settings.page_size);
    let mut waiting = Instant::now();
    while let Some(recorded) = pages.next().await? {
        let waited = waiting.elapsed();
        let Some(last) = recorded.last().map(|e| e.position) else {
            break;
        };
        let decoding = Instant::now();
        let projected = decode_page(&recorded)?;
        tracing::debug!(elapsed = ?decoding.elapsed(), waited = ?waited, "rebuild: page decoded");
        let writes = tables.iter().map(|table| {
            let projected = &projected;
            async move {
                let started = Instant::now();
                let mut tx = read.begin().await?;
                apply_events(tx.as_mut(), *table, suffix, projected).await?;
                tx.commit().await?;
                tracing::debug!(table = table.name(), elapsed = ?started.elapsed(), "rebuild: page written");
                Ok::<_, ProjectionError>(())
            }
        });
        futures::future::try_join_all(writes).await?;
        applied += recorded.len() as u64;
        position = last;
        head = head.max(position);
        progress(position, head);
        waiting = Instant::now();
    }

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
