//! Log positions read from query strings (`from`, `min_position`).
//!
//! The log stores positions as `BIGINT`, so the stores bind them as `i64`: a position past
//! `i64::MAX` would wrap to a negative number there, and `from=9223372036854775808` would
//! quietly read the log from its start. No such position can exist, so the edge refuses it.

use super::error::ApiError;
use super::error_code::ErrorCode;

/// The largest position the log can hold.
pub const MAX_POSITION: u64 = i64::MAX as u64;

/// Checks an optional position parameter named `name`.
pub fn position(name: &str, value: Option<u64>) -> Result<Option<u64>, ApiError> {
    match value {
        Some(position) if position > MAX_POSITION => Err(ApiError::new(
            ErrorCode::InvalidPosition,
            format!("{name} must be a log position from 0 to {MAX_POSITION}"),
        )),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_past_the_logs_range_are_refused_not_wrapped() {
        assert_eq!(position("from", None), Ok(None));
        assert_eq!(position("from", Some(0)), Ok(Some(0)));
        assert_eq!(position("from", Some(MAX_POSITION)), Ok(Some(MAX_POSITION)));
        for wrapping in [MAX_POSITION + 1, u64::MAX] {
            let refused = position("from", Some(wrapping)).unwrap_err();
            assert_eq!(refused.code(), ErrorCode::InvalidPosition);
            assert_eq!(refused.status(), actix_web::http::StatusCode::BAD_REQUEST);
        }
    }
}
