//! What a transfer's body says. Fragment's payment for an order carries a text comment
//! naming the order (`… Telegram Stars … Ref#…`): that reference is how Fragment matches the
//! money to the order, so the worker refuses to pay without one and checks that the
//! transaction on chain carried the same body.
//!
//! A text comment is a cell starting with a 32-bit zero op, then UTF-8 text that continues
//! in the cell's first reference when it is long ("snake" format). toncenter shows an
//! outgoing body either as raw cells (`msg.dataRaw`) or, when it reads as a comment, as its
//! text (`msg.dataText`, the text base64-encoded).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use tonlib_core::cell::{ArcCell, BagOfCells, CellBuilder, TonCellError};

use super::wallet::{parse_boc, BocError};

/// A comment longer than this many cells is not one we will read (Fragment's fit in one).
const MAX_COMMENT_CELLS: usize = 16;

/// Bytes of text in the first cell of a comment (1023 bits, less the 32-bit op) and in each
/// cell after it.
const FIRST_CELL_BYTES: usize = 123;
const NEXT_CELL_BYTES: usize = 127;

/// A transfer's body, as much as matters for matching it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A text comment: its text.
    Comment(String),
    /// Anything else: the hash of its root cell (hex).
    Cells(String),
}

/// Why a payload cannot be read, or a comment cannot be written as one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Unreadable(#[from] BocError),
    #[error("a comment of {bytes} bytes is too long")]
    TooLong { bytes: usize },
    /// What tonlib-core said while building the cells.
    #[error("{0}")]
    Cell(String),
    #[error("no cell")]
    NoCell,
}

impl From<TonCellError> for BodyError {
    fn from(error: TonCellError) -> Self {
        Self::Cell(error.to_string())
    }
}

/// Reads a payload (base64 bag of one cell).
pub fn read(payload: &str) -> Result<Body, BodyError> {
    let root = parse_boc(payload)?;
    Ok(match comment_text(&root) {
        Some(text) => Body::Comment(text),
        None => Body::Cells(root.cell_hash().to_hex()),
    })
}

/// The comment of a payload, if it is one.
pub fn comment(payload: &str) -> Option<String> {
    match read(payload) {
        Ok(Body::Comment(text)) => Some(text),
        _ => None,
    }
}

/// Whether two payloads say the same: the same comment text, or the same cells.
pub fn same(a: &str, b: &str) -> bool {
    match (read(a), read(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// `text` as a comment payload (base64 bag of cells), the form toncenter's `msg.dataText`
/// stands for.
pub fn comment_payload(text: &str) -> Result<String, BodyError> {
    let bytes = text.as_bytes();
    let (first, mut rest) = bytes.split_at(bytes.len().min(FIRST_CELL_BYTES));
    let mut chunks = vec![first];
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(rest.len().min(NEXT_CELL_BYTES));
        chunks.push(chunk);
        rest = after;
    }
    if chunks.len() > MAX_COMMENT_CELLS {
        return Err(BodyError::TooLong { bytes: bytes.len() });
    }
    let mut child: Option<ArcCell> = None;
    for (index, chunk) in chunks.iter().enumerate().rev() {
        let mut cell = CellBuilder::new();
        if index == 0 {
            cell.store_u32(32, 0)?;
        }
        cell.store_slice(chunk)?;
        if let Some(next) = &child {
            cell.store_reference(next)?;
        }
        child = Some(cell.build()?.to_arc());
    }
    let root = child.ok_or(BodyError::NoCell)?;
    let bytes = BagOfCells::from_root((*root).clone()).serialize(true)?;
    Ok(STANDARD.encode(bytes))
}

/// The text of a comment cell chain, if `root` is one: op 0, whole bytes of UTF-8, each cell
/// with at most one reference (the continuation).
fn comment_text(root: &ArcCell) -> Option<String> {
    let mut parser = root.parser();
    if parser.remaining_bits() < 32 || parser.load_u32(32).ok()? != 0 {
        return None;
    }
    let mut bytes = Vec::new();
    let mut cell = root.clone();
    let mut first = true;
    for _ in 0..MAX_COMMENT_CELLS {
        let mut parser = cell.parser();
        if first {
            parser.load_u32(32).ok()?;
            first = false;
        }
        let bits = parser.remaining_bits();
        if !bits.is_multiple_of(8) || cell.references().len() > 1 {
            return None;
        }
        bytes.extend(parser.load_bytes(bits / 8).ok()?);
        match cell.references().first() {
            Some(next) => cell = next.clone(),
            None => return String::from_utf8(bytes).ok(),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_round_trip_short_and_long() {
        for text in [
            "50 Telegram Stars \n\nRef#Z6C6bf0001",
            &"Ref#ÿ-long ".repeat(40),
            "",
        ] {
            let payload = comment_payload(text).unwrap();
            assert_eq!(read(&payload).unwrap(), Body::Comment(text.to_owned()));
            assert!(same(&payload, &comment_payload(text).unwrap()));
        }
        assert!(!same(
            &comment_payload("Ref#A").unwrap(),
            &comment_payload("Ref#B").unwrap()
        ));
    }

    #[test]
    fn a_body_that_is_not_a_comment_is_matched_by_its_cells() {
        let mut cell = CellBuilder::new();
        cell.store_u32(32, 0x0f8a_7ea5)
            .unwrap()
            .store_u64(64, 7)
            .unwrap();
        let cell = cell.build().unwrap();
        let payload = STANDARD.encode(BagOfCells::from_root(cell).serialize(true).unwrap());
        assert!(matches!(read(&payload).unwrap(), Body::Cells(_)));
        assert!(same(&payload, &payload));
        assert!(!same(&payload, &comment_payload("Ref#A").unwrap()));
        assert!(read("not base64 !").is_err());
        assert!(!same("not base64 !", "not base64 !"));
    }
}
