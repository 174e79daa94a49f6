//! Where a balances job keeps its result: every balance as one JSON line in an anonymous
//! temporary file (gone when the job is replaced or the process ends), read back a page at a
//! time, so a million users cost disk, not memory, and no answer holds them all.
//!
//! The replay hands over its rows one share at a time, each share in key order (see
//! `starledger_projections::audit::ReplaySettings`); each share is written to a run file of
//! its own, and [`SpoolWriter::finish`] merges the runs into one list in (user, currency)
//! order, noting where every [`INDEX_EVERY`]th line starts.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;
use starledger_projections::rows::BalanceRow;
use utoipa::ToSchema;

use super::wire::DecimalText;

/// Lines between two entries of the offset index.
const INDEX_EVERY: u64 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot use the temporary file: {0}")]
    Io(#[from] io::Error),
    #[error("the spooled balances are unreadable: {0}")]
    Corrupt(String),
}

/// A balance as it stood at a moment, as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceAt {
    pub user_id: i64,
    #[schema(example = "TON")]
    pub currency: String,
    pub available: DecimalText,
    pub reserved: DecimalText,
    pub total: DecimalText,
    /// What the user owed then (after a refunded payment whose credit was spent).
    pub debt: DecimalText,
}

impl From<&BalanceRow> for BalanceAt {
    fn from(row: &BalanceRow) -> Self {
        Self {
            user_id: row.user_id,
            currency: row.currency.clone(),
            available: DecimalText::normalized(row.available),
            reserved: DecimalText::normalized(row.reserved),
            total: DecimalText::normalized(row.total()),
            debt: DecimalText::normalized(row.debt),
        }
    }
}

/// Collects the rows of each pass into a run file.
#[derive(Default)]
pub struct SpoolWriter {
    runs: Vec<(u64, BufWriter<File>)>,
}

impl SpoolWriter {
    /// Adds `row`, the next of pass `pass` (rows of one pass come in key order).
    pub fn push(&mut self, pass: u64, row: &BalanceRow) -> Result<(), SpoolError> {
        if self.runs.last().is_none_or(|(p, _)| *p != pass) {
            self.runs
                .push((pass, BufWriter::new(tempfile::tempfile()?)));
        }
        let Some((_, run)) = self.runs.last_mut() else {
            return Ok(());
        };
        // The key before the JSON, so the merge compares without parsing.
        writeln!(
            run,
            "{}\t{}\t{}",
            row.user_id,
            row.currency,
            serde_json::to_string(&BalanceAt::from(row)).map_err(io::Error::other)?
        )?;
        Ok(())
    }

    /// Merges the runs into one spool in key order. Blocking file work: call it off the
    /// async runtime's threads.
    pub fn finish(self) -> Result<BalanceSpool, SpoolError> {
        let mut readers = Vec::new();
        for (_, run) in self.runs {
            let mut file = run.into_inner().map_err(|e| e.into_error())?;
            file.seek(SeekFrom::Start(0))?;
            readers.push(BufReader::new(file).lines());
        }
        let next = |lines: &mut io::Lines<BufReader<File>>| -> Result<_, SpoolError> {
            let Some(line) = lines.next().transpose()? else {
                return Ok(None);
            };
            let mut parts = line.splitn(3, '\t');
            let (Some(user), Some(currency), Some(body)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(SpoolError::Corrupt(format!(
                    "a run line without its key: {line}"
                )));
            };
            let user: i64 = user
                .parse()
                .map_err(|_| SpoolError::Corrupt(format!("not a user id: {user}")))?;
            Ok(Some((user, currency.to_owned(), body.to_owned())))
        };
        let mut heap = BinaryHeap::new();
        for (run, lines) in readers.iter_mut().enumerate() {
            if let Some((user, currency, body)) = next(lines)? {
                heap.push(Reverse((user, currency, run, body)));
            }
        }
        let mut out = BufWriter::new(tempfile::tempfile()?);
        let (mut rows, mut written, mut offsets) = (0u64, 0u64, Vec::new());
        while let Some(Reverse((_, _, run, body))) = heap.pop() {
            if rows % INDEX_EVERY == 0 {
                offsets.push(written);
            }
            out.write_all(body.as_bytes())?;
            out.write_all(b"\n")?;
            written += body.len() as u64 + 1;
            rows += 1;
            if let Some((user, currency, body)) = next(&mut readers[run])? {
                heap.push(Reverse((user, currency, run, body)));
            }
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        Ok(BalanceSpool {
            file: Mutex::new(file),
            offsets,
            rows,
        })
    }
}

/// Every balance of a finished job, in (user, currency) order.
#[derive(Debug)]
pub struct BalanceSpool {
    file: Mutex<File>,
    offsets: Vec<u64>,
    rows: u64,
}

impl BalanceSpool {
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Up to `limit` balances from row `cursor` on. Blocking file work.
    pub fn page(&self, cursor: u64, limit: usize) -> Result<Vec<Value>, SpoolError> {
        if cursor >= self.rows {
            return Ok(Vec::new());
        }
        let offset = self.offsets[(cursor / INDEX_EVERY) as usize];
        let file = self
            .file
            .lock()
            .map_err(|_| SpoolError::Corrupt("a reader panicked".into()))?;
        let mut reader = BufReader::new(&*file);
        reader.seek(SeekFrom::Start(offset))?;
        let mut lines = reader.lines().skip((cursor % INDEX_EVERY) as usize);
        let mut page = Vec::with_capacity(limit.min(self.rows as usize));
        while page.len() < limit {
            let Some(line) = lines.next().transpose()? else {
                break;
            };
            page.push(serde_json::from_str(&line).map_err(|e| SpoolError::Corrupt(e.to_string()))?);
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    fn row(user_id: i64) -> BalanceRow {
        BalanceRow {
            user_id,
            currency: "TON".into(),
            available: Decimal::new(user_id, 1),
            reserved: Decimal::ZERO,
            debt: Decimal::ZERO,
            updated_at: chrono::Utc::now(),
            position: 1,
            no_money_events: false,
        }
    }

    #[test]
    fn runs_merge_into_key_order_and_page_from_any_row() {
        let mut writer = SpoolWriter::default();
        // Three passes, each in key order, keys interleaved across them.
        for pass in 0..3u64 {
            for user in (0..2_500).filter(|u| u % 3 == pass as i64) {
                writer.push(pass, &row(user)).unwrap();
            }
        }
        let spool = writer.finish().unwrap();
        assert_eq!(spool.rows(), 2_500);
        let users = |page: Vec<Value>| -> Vec<i64> {
            page.iter()
                .map(|b| b["user_id"].as_i64().unwrap())
                .collect()
        };
        assert_eq!(users(spool.page(0, 3).unwrap()), vec![0, 1, 2]);
        assert_eq!(users(spool.page(999, 3).unwrap()), vec![999, 1000, 1001]);
        assert_eq!(users(spool.page(2_498, 10).unwrap()), vec![2_498, 2_499]);
        assert!(spool.page(2_500, 10).unwrap().is_empty());
        let first = &spool.page(7, 1).unwrap()[0];
        assert_eq!(first["available"], "0.7");
        assert_eq!(first["total"], "0.7");
    }

    #[test]
    fn no_rows_make_an_empty_spool() {
        let spool = SpoolWriter::default().finish().unwrap();
        assert_eq!(spool.rows(), 0);
        assert!(spool.page(0, 10).unwrap().is_empty());
    }
}
