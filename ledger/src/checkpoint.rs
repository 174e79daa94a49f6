//! The verified checkpoint's audit state: what `audit verify` must remember of a sound log to
//! check only the events after it, encoded compactly, and the rules for trusting it again.
//!
//! A checkpoint ([`crate::store::VerifiedCheckpoint`]) is written after a sound run. It holds
//! the position and hash of the last event verified, and this state:
//!
//! - the trial-balance totals per currency (all zero in a sound log, kept anyway: they are
//!   what the next run adds to);
//! - per account stream, what [`Account::evolve`] and [`Account::check_invariants`] read: the
//!   profile, `available`, `reserved`, `debt`, `open_reservations`, and every purchase (id,
//!   Stars, price, status, payment attempts; closed ones too, since a second completion, a
//!   re-request or a late order event for one must be judged as a whole run would). Recharges
//!   and adjustments are left out: no invariant reads them and no later event's effect on the
//!   balances depends on them.
//!
//! A run resumed from this state makes exactly the findings a whole run would make on the
//! events after the checkpoint, provided the events up to it are the ones that were verified.
//! That proviso is checked cheaply ([`check_stored`]): the event at the checkpoint's position
//! must still carry the recorded hash, and the hash chain makes that hash commit to every
//! event before it, so a rewritten prefix (rows changed and the chain recomputed) is caught.
//! A row edited in place with its stored hashes left as they were is not: that is only found
//! by re-hashing the prefix, which is `audit verify --full`.
//!
//! The encoding is a byte string of its own (format [`STATE_FORMAT`]), little-endian integers
//! and LEB128 lengths, accounts sorted by stream and purchases by id, so equal states encode
//! to equal bytes. Its sha256 is stored beside it and checked before it is decoded.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::account::{Account, Profile, Purchase, PurchaseStatus};
use crate::chain::Hash;
use crate::events::Stars;
use crate::ids::{PurchaseId, UserId};
use crate::money::{Amount, Currency};
use crate::store::{RecordedEvent, VerifiedCheckpoint};

/// The version of the audit rules that wrote a checkpoint. A checkpoint written by another
/// version is not resumed from: its rules may have judged the prefix differently.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The encoding of the state; bumped when it changes.
pub const STATE_FORMAT: u16 = 1;

const MAGIC: &[u8; 4] = b"SLAS";

/// The audit state at a checkpoint, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditState {
    pub totals: BTreeMap<Currency, Decimal>,
    pub accounts: HashMap<String, Account>,
}

/// Why a stored state cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("the state ends early (at byte {0})")]
    Truncated(usize),
    #[error("the state is not a starledger audit state")]
    NotAState,
    #[error("the state has format {0}, this version reads format {STATE_FORMAT}")]
    Format(u16),
    #[error("the state is malformed at byte {at}: {reason}")]
    Malformed { at: usize, reason: String },
    #[error("the state has {0} bytes after its end")]
    TrailingBytes(usize),
}

/// The sha256 of a state's bytes, as stored beside them.
pub fn state_hash(bytes: &[u8]) -> Hash {
    Hash(Sha256::digest(bytes).into())
}

fn status_code(status: PurchaseStatus) -> u8 {
    match status {
        PurchaseStatus::Reserved => 0,
        PurchaseStatus::OrderPlaced => 1,
        PurchaseStatus::OrderSent => 2,
        PurchaseStatus::Completed => 3,
        PurchaseStatus::Failed => 4,
    }
}

fn status_from(code: u8) -> Option<PurchaseStatus> {
    Some(match code {
        0 => PurchaseStatus::Reserved,
        1 => PurchaseStatus::OrderPlaced,
        2 => PurchaseStatus::OrderSent,
        3 => PurchaseStatus::Completed,
        4 => PurchaseStatus::Failed,
        _ => return None,
    })
}

struct Writer(Vec<u8>);

impl Writer {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    fn text(&mut self, text: &str) {
        self.bytes(text.as_bytes());
    }

    fn optional_text(&mut self, text: Option<&str>) {
        match text {
            None => self.0.push(0),
            Some(text) => {
                self.0.push(1);
                self.text(text);
            }
        }
    }

    /// A decimal as its text, which keeps its scale ("0.50" stays "0.50").
    fn decimal(&mut self, value: Decimal) {
        self.text(&value.to_string());
    }
}

/// Encodes the audit state: the trial-balance totals and every account.
pub fn encode_state(
    totals: &BTreeMap<Currency, Decimal>,
    accounts: &HashMap<String, Account>,
) -> Vec<u8> {
    let mut out = Writer(Vec::with_capacity(64 + accounts.len() * 128));
    out.0.extend_from_slice(MAGIC);
    out.0.extend_from_slice(&STATE_FORMAT.to_le_bytes());
    out.varint(totals.len() as u64);
    for (currency, total) in totals {
        out.text(currency.as_str());
        out.decimal(*total);
    }
    let mut streams: Vec<&String> = accounts.keys().collect();
    streams.sort();
    out.varint(streams.len() as u64);
    for stream in streams {
        let account = &accounts[stream];
        out.text(stream);
        match &account.profile {
            None => out.0.push(0),
            Some(profile) => {
                out.0.push(1);
                out.0
                    .extend_from_slice(&profile.user_id.get().to_le_bytes());
                out.optional_text(profile.username.as_deref());
                out.optional_text(profile.language.as_deref());
                out.text(profile.currency.as_str());
            }
        }
        out.decimal(account.available);
        out.decimal(account.reserved);
        out.decimal(account.debt);
        out.decimal(account.open_reservations);
        let mut purchases: Vec<(&PurchaseId, &Purchase)> = account.purchases.iter().collect();
        purchases.sort_by_key(|(id, _)| **id);
        out.varint(purchases.len() as u64);
        for (id, purchase) in purchases {
            out.0.extend_from_slice(id.uuid().as_bytes());
            out.varint(u64::from(purchase.stars.get()));
            out.decimal(purchase.price.value());
            out.0.push(status_code(purchase.status));
            out.varint(u64::from(purchase.payment_attempts));
        }
    }
    out.0
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(StateError::Truncated(self.at))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn malformed(&self, reason: impl Into<String>) -> StateError {
        StateError::Malformed {
            at: self.at,
            reason: reason.into(),
        }
    }

    fn byte(&mut self) -> Result<u8, StateError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StateError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn varint(&mut self) -> Result<u64, StateError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.malformed("a number longer than 64 bits"))
    }

    fn count(&mut self) -> Result<usize, StateError> {
        let count = self.varint()?;
        // Every counted item takes at least one byte: a larger count is corrupt, and must not
        // size an allocation.
        usize::try_from(count)
            .ok()
            .filter(|count| *count <= self.bytes.len() - self.at)
            .ok_or_else(|| self.malformed(format!("a count of {count}")))
    }

    fn text(&mut self) -> Result<&'a str, StateError> {
        let len = self.count()?;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|_| self.malformed("text that is not UTF-8"))
    }

    fn optional_text(&mut self) -> Result<Option<String>, StateError> {
        match self.byte()? {
            0 => Ok(None),
            1 => Ok(Some(self.text()?.to_owned())),
            flag => Err(self.malformed(format!("an optional flag of {flag}"))),
        }
    }

    fn decimal(&mut self) -> Result<Decimal, StateError> {
        let text = self.text()?;
        Decimal::from_str(text).map_err(|e| self.malformed(format!("decimal {text:?}: {e}")))
    }

    fn currency(&mut self) -> Result<Currency, StateError> {
        let text = self.text()?;
        Currency::parse(text).map_err(|e| self.malformed(format!("currency {text:?}: {e}")))
    }
}

/// Decodes a state written by [`encode_state`].
pub fn decode_state(bytes: &[u8]) -> Result<AuditState, StateError> {
    let mut input = Reader { bytes, at: 0 };
    if input.take(MAGIC.len()).map_err(|_| StateError::NotAState)? != MAGIC {
        return Err(StateError::NotAState);
    }
    let format = u16::from_le_bytes(input.array()?);
    if format != STATE_FORMAT {
        return Err(StateError::Format(format));
    }
    let mut state = AuditState::default();
    for _ in 0..input.count()? {
        let currency = input.currency()?;
        let total = input.decimal()?;
        state.totals.insert(currency, total);
    }
    let accounts = input.count()?;
    state.accounts.reserve(accounts);
    for _ in 0..accounts {
        let stream = input.text()?.to_owned();
        let profile = match input.byte()? {
            0 => None,
            1 => {
                let id = i64::from_le_bytes(input.array()?);
                let user_id = UserId::new(id).map_err(|e| input.malformed(e.to_string()))?;
                Some(Profile {
                    user_id,
                    username: input.optional_text()?,
                    language: input.optional_text()?,
                    currency: input.currency()?,
                })
            }
            flag => return Err(input.malformed(format!("a profile flag of {flag}"))),
        };
        let mut account = Account {
            profile,
            available: input.decimal()?,
            reserved: input.decimal()?,
            debt: input.decimal()?,
            open_reservations: input.decimal()?,
            ..Account::default()
        };
        let purchases = input.count()?;
        account.purchases.reserve(purchases);
        for _ in 0..purchases {
            let id = PurchaseId::from_uuid(uuid::Uuid::from_bytes(input.array()?));
            let stars = input.varint()?;
            let stars = i64::try_from(stars)
                .ok()
                .and_then(|stars| Stars::new(stars).ok())
                .ok_or_else(|| input.malformed(format!("{stars} stars")))?;
            let price = input.decimal()?;
            let price =
                Amount::new(price).map_err(|e| input.malformed(format!("price {price}: {e}")))?;
            let code = input.byte()?;
            let status =
                status_from(code).ok_or_else(|| input.malformed(format!("status {code}")))?;
            let attempts = input.varint()?;
            let payment_attempts = u32::try_from(attempts)
                .map_err(|_| input.malformed(format!("{attempts} payment attempts")))?;
            account.purchases.insert(
                id,
                Purchase {
                    stars,
                    price,
                    status,
                    payment_attempts,
                },
            );
        }
        state.accounts.insert(stream, account);
    }
    if input.at != bytes.len() {
        return Err(StateError::TrailingBytes(bytes.len() - input.at));
    }
    Ok(state)
}

/// Whether a stored checkpoint can be resumed from, before the log is looked at: its version,
/// and its state against the state's hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error("it was written by version {0}, this is {TOOL_VERSION}")]
    OtherVersion(String),
    #[error("its state was dropped (a newer checkpoint replaced it)")]
    NoState,
    #[error("its state does not match the state's recorded hash")]
    StateHash,
    #[error(transparent)]
    State(#[from] StateError),
    #[error("the event at its position {0} no longer matches its own stored hash")]
    EventAltered(u64),
}

/// Checks a checkpoint's version and state, and decodes the state.
pub fn open_state(checkpoint: &VerifiedCheckpoint) -> Result<AuditState, Unusable> {
    if checkpoint.tool_version != TOOL_VERSION {
        return Err(Unusable::OtherVersion(checkpoint.tool_version.clone()));
    }
    let bytes = checkpoint.state.as_deref().ok_or(Unusable::NoState)?;
    if state_hash(bytes) != checkpoint.state_hash {
        return Err(Unusable::StateHash);
    }
    Ok(decode_state(bytes)?)
}

/// What the log says about a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// The event at the checkpoint's position still has the recorded hash, and that hash
    /// is its own: the prefix is the one verified (up to an in-place edit that left the
    /// stored hashes alone, see the module documentation).
    Matches,
    /// The log no longer matches: a finding.
    Differs(crate::audit::Finding),
    /// The event there has the recorded hash, but its fields no longer hash to it: a whole
    /// run will report where.
    Unusable(Unusable),
}

/// Checks the checkpoint against `event`, the log's event at the checkpoint's position
/// (`None`: the log does not reach it; `head` is where it ends).
pub fn check_stored(
    checkpoint: &VerifiedCheckpoint,
    event: Option<&RecordedEvent>,
    head: u64,
) -> Stored {
    use crate::audit::Finding;
    let Some(event) = event.filter(|event| event.position == checkpoint.position) else {
        return Stored::Differs(Finding::CheckpointBeyondLog {
            position: checkpoint.position,
            head,
        });
    };
    if event.hash != checkpoint.head_hash {
        return Stored::Differs(Finding::CheckpointRewritten {
            position: checkpoint.position,
            recorded: checkpoint.head_hash,
            found: event.hash,
        });
    }
    if event.compute_hash() != event.hash {
        return Stored::Unusable(Unusable::EventAltered(event.position));
    }
    Stored::Matches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::RechargeStatus;
    use crate::ids::{IdempotencyKey, RechargeId};

    fn sample() -> (BTreeMap<Currency, Decimal>, HashMap<String, Account>) {
        let user = UserId::new(42).unwrap();
        let key = |k: &str| IdempotencyKey::parse(k).unwrap();
        let mut account = Account {
            profile: Some(Profile {
                user_id: user,
                username: Some("алиса".into()),
                language: None,
                currency: Currency::ton(),
            }),
            available: Decimal::new(1050, 2),
            reserved: Decimal::new(5, 1),
            debt: Decimal::ZERO,
            open_reservations: Decimal::new(5, 1),
            ..Account::default()
        };
        for (k, status, attempts) in [
            ("a", PurchaseStatus::Reserved, 0),
            ("b", PurchaseStatus::OrderSent, 3),
            ("c", PurchaseStatus::Completed, 1),
            ("d", PurchaseStatus::Failed, 0),
        ] {
            account.purchases.insert(
                PurchaseId::derive(user, &key(k)),
                Purchase {
                    stars: Stars::new(100).unwrap(),
                    price: Amount::parse("0.50").unwrap(),
                    status,
                    payment_attempts: attempts,
                },
            );
        }
        let mut accounts = HashMap::new();
        accounts.insert(user.stream().to_string(), account);
        accounts.insert("account-7".into(), Account::default());
        let mut totals = BTreeMap::new();
        totals.insert(Currency::ton(), Decimal::ZERO);
        (totals, accounts)
    }

    #[test]
    fn a_state_round_trips_and_encodes_deterministically() {
        let (totals, accounts) = sample();
        let bytes = encode_state(&totals, &accounts);
        let state = decode_state(&bytes).unwrap();
        assert_eq!(state.totals, totals);
        assert_eq!(state.accounts, accounts);
        assert_eq!(encode_state(&state.totals, &state.accounts), bytes);
    }

    #[test]
    fn recharges_and_adjustments_are_left_out() {
        let (totals, mut accounts) = sample();
        let user = UserId::new(42).unwrap();
        let stream = user.stream().to_string();
        let with = accounts.get_mut(&stream).unwrap();
        with.recharges.insert(
            RechargeId::derive(user, &IdempotencyKey::parse("r").unwrap()),
            crate::account::Recharge {
                amount: Amount::parse("1").unwrap(),
                status: RechargeStatus::Pending,
                reviewed: false,
            },
        );
        let state = decode_state(&encode_state(&totals, &accounts)).unwrap();
        assert!(state.accounts[&stream].recharges.is_empty());
        assert_eq!(
            state.accounts[&stream].purchases,
            accounts[&stream].purchases
        );
    }

    #[test]
    fn every_truncation_and_a_trailing_byte_are_refused() {
        let (totals, accounts) = sample();
        let bytes = encode_state(&totals, &accounts);
        for len in 0..bytes.len() {
            assert!(decode_state(&bytes[..len]).is_err(), "{len} bytes decoded");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode_state(&longer), Err(StateError::TrailingBytes(1)));
    }

    #[test]
    fn flipped_bytes_never_panic() {
        let (totals, accounts) = sample();
        let bytes = encode_state(&totals, &accounts);
        for i in 0..bytes.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bad = bytes.clone();
                bad[i] ^= flip;
                let _ = decode_state(&bad);
            }
        }
    }
}
