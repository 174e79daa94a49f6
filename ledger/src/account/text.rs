//! Free text the ledger keeps (usernames, reasons, notes, provider words): trimmed, bounded,
//! and made only of characters that read as what they are.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use super::rejection::Rejection;

/// Longest free-text reason (failure reason, admin reason) kept in an event.
pub const MAX_REASON_LEN: usize = 500;

/// Whether `c` may stand in free text kept in the ledger: no control characters, and no
/// Unicode format characters (bidi overrides and isolates, zero-width spaces and joiners,
/// the byte-order mark, …), which make a name or a reason read differently from what it is.
pub fn is_clean_text_char(c: char) -> bool {
    !c.is_control() && c.general_category() != GeneralCategory::Format
}

/// Free text as the ledger keeps it: trimmed, 1 to `max` characters, every one clean.
pub fn checked_text(field: &'static str, text: &str, max: usize) -> Result<String, Rejection> {
    let trimmed = text.trim();
    if trimmed.is_empty()
        || trimmed.chars().count() > max
        || !trimmed.chars().all(is_clean_text_char)
    {
        return Err(Rejection::InvalidText { field, max });
    }
    Ok(trimmed.to_owned())
}

pub(super) fn optional_text(
    field: &'static str,
    text: &Option<String>,
    max: usize,
) -> Result<Option<String>, Rejection> {
    text.as_deref()
        .map(|t| checked_text(field, t, max))
        .transpose()
}
