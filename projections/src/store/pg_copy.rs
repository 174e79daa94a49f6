//! Rows that do not exist yet, written with PostgreSQL `COPY … FROM STDIN (FORMAT csv)`
//! instead of an upsert: what a rebuild writes into its fresh tables.
//!
//! COPY skips the per-statement parsing, the array parameters and the conflict check of
//! `INSERT … SELECT unnest(…) ON CONFLICT`, and the rows are encoded and sent in chunks of
//! [`CHUNK`] bytes, so no second copy of a large window is held. A row that does exist makes
//! the COPY fail on the primary key (nothing is overwritten).
//!
//! CSV as PostgreSQL reads it: every text field quoted with `"` (a `"` inside doubled), so
//! commas, quotes and line breaks in names or reasons travel as they are; an unquoted empty
//! field is NULL; timestamps in UTC with microseconds, as the column keeps them.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;

use super::{table_name, ReadError};
use crate::model::{Page, Table};

/// Bytes encoded before they are handed to the connection.
const CHUNK: usize = 1 << 20;

/// Writes the page's rows of `table<suffix>`, all of which must be new.
pub(super) async fn copy_new(
    connection: &mut PgConnection,
    table: Table,
    suffix: &str,
    page: &Page,
) -> Result<(), ReadError> {
    let name = table_name(table, suffix);
    let (columns, rows) = match table {
        Table::Users => (
            "user_id, username, language, currency, created_at, position",
            page.users.len(),
        ),
        Table::Balances => (
            "user_id, currency, available, reserved, total, debt, updated_at, position",
            page.balances.len(),
        ),
        Table::Transactions => (
            "id, user_id, transaction_type, status, amount, currency, description, external_id, \
             transaction_metadata, created_at, updated_at, created_position, position",
            page.transactions.len(),
        ),
    };
    if rows == 0 {
        return Ok(());
    }
    let mut copy = connection
        .copy_in_raw(&format!(
            "COPY {name} ({columns}) FROM STDIN WITH (FORMAT csv)"
        ))
        .await?;
    let mut csv = Csv::default();
    match table {
        Table::Users => {
            for row in page.users.values() {
                csv.int(row.user_id);
                csv.optional_text(row.username.as_deref());
                csv.optional_text(row.language.as_deref());
                csv.text(&row.currency);
                csv.time(row.registered_at);
                csv.int(row.position as i64);
                if let Some(chunk) = csv.end_row() {
                    copy.send(chunk).await?;
                }
            }
        }
        Table::Balances => {
            for row in page.balances.values() {
                csv.int(row.user_id);
                csv.text(&row.currency);
                csv.decimal(row.available);
                csv.decimal(row.reserved);
                csv.decimal(row.total());
                csv.decimal(row.debt);
                csv.time(row.updated_at);
                csv.int(row.position as i64);
                if let Some(chunk) = csv.end_row() {
                    copy.send(chunk).await?;
                }
            }
        }
        Table::Transactions => {
            for row in page.transactions.values() {
                csv.raw(row.id.hyphenated().to_string().as_bytes());
                csv.int(row.user_id);
                csv.text(row.kind.as_str());
                csv.text(&row.status);
                csv.decimal(row.amount);
                csv.text(&row.currency);
                csv.optional_text(row.description.as_deref());
                csv.optional_text(row.external_id.as_deref());
                csv.text(&row.metadata.to_string());
                csv.time(row.created_at);
                csv.time(row.updated_at);
                csv.int(row.created_position as i64);
                csv.int(row.position as i64);
                if let Some(chunk) = csv.end_row() {
                    copy.send(chunk).await?;
                }
            }
        }
    }
    if !csv.0.is_empty() {
        copy.send(csv.0).await?;
    }
    copy.finish().await?;
    Ok(())
}

/// One CSV record being written: fields are separated as they are added.
#[derive(Default)]
struct Csv(Vec<u8>, bool);

impl Csv {
    fn separate(&mut self) {
        if self.1 {
            self.0.push(b',');
        }
        self.1 = true;
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.separate();
        self.0.extend_from_slice(bytes);
    }

    fn int(&mut self, value: i64) {
        self.raw(value.to_string().as_bytes());
    }

    fn decimal(&mut self, value: Decimal) {
        self.raw(value.to_string().as_bytes());
    }

    fn time(&mut self, value: DateTime<Utc>) {
        self.raw(
            value
                .format("%Y-%m-%d %H:%M:%S%.6f+00")
                .to_string()
                .as_bytes(),
        );
    }

    /// Quoted, so an empty text stays an empty text (not NULL).
    fn text(&mut self, value: &str) {
        self.separate();
        self.0.push(b'"');
        for byte in value.bytes() {
            if byte == b'"' {
                self.0.push(b'"');
            }
            self.0.push(byte);
        }
        self.0.push(b'"');
    }

    /// NULL is an unquoted empty field.
    fn optional_text(&mut self, value: Option<&str>) {
        match value {
            Some(value) => self.text(value),
            None => self.separate(),
        }
    }

    /// Ends the record; hands back what was encoded once it reaches [`CHUNK`] bytes.
    fn end_row(&mut self) -> Option<Vec<u8>> {
        self.0.push(b'\n');
        self.1 = false;
        (self.0.len() >= CHUNK).then(|| std::mem::take(&mut self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_quoted_and_null_is_empty() {
        let mut csv = Csv::default();
        csv.int(-7);
        csv.text("a \"quoted\", two\nlines");
        csv.optional_text(None);
        csv.text("");
        csv.decimal(Decimal::new(1050, 2));
        csv.end_row();
        csv.int(1);
        csv.end_row();
        assert_eq!(
            String::from_utf8(csv.0).unwrap(),
            "-7,\"a \"\"quoted\"\", two\nlines\",,\"\",10.50\n1\n"
        );
    }

    #[test]
    fn times_are_utc_with_microseconds() {
        let mut csv = Csv::default();
        let time = DateTime::parse_from_rfc3339("2026-12-04T15:50:01.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        csv.time(time);
        assert_eq!(
            String::from_utf8(csv.0).unwrap(),
            "2026-12-04 15:50:01.123456+00"
        );
    }
}
