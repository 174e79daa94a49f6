//! The hash chain over the whole log: `hash = sha256(prev_hash || canonical bytes of event)`.
//!
//! Every event's hash covers its position, stream, version, id, type, schema version, data,
//! metadata and time, and the hash of the event before it. Editing, deleting or reordering any
//! stored row therefore breaks the chain at that row, and `verify` names the position.

use std::fmt;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::store::RecordedEvent;

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The `prev_hash` of the first event.
    pub const GENESIS: Hash = Hash([0; 32]);

    pub fn from_slice(bytes: &[u8]) -> Option<Hash> {
        bytes.try_into().ok().map(Hash)
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The fields of an event that its hash covers.
pub struct HashedFields<'a> {
    pub position: u64,
    pub stream_id: &'a str,
    pub stream_version: u64,
    pub event_id: uuid::Uuid,
    pub event_type: &'a str,
    pub schema_version: i32,
    /// Canonical JSON text (see [`canonical_json`]), exactly as stored.
    pub data: &'a str,
    pub metadata: &'a str,
    pub recorded_at_micros: i64,
}

/// Computes the hash of one event given the hash of the one before it.
pub fn event_hash(prev: &Hash, fields: &HashedFields<'_>) -> Hash {
    let mut buffer = Vec::with_capacity(512);
    buffer.extend_from_slice(&prev.0);
    buffer.extend_from_slice(&fields.position.to_be_bytes());
    put_field(&mut buffer, fields.stream_id.as_bytes());
    buffer.extend_from_slice(&fields.stream_version.to_be_bytes());
    buffer.extend_from_slice(fields.event_id.as_bytes());
    put_field(&mut buffer, fields.event_type.as_bytes());
    buffer.extend_from_slice(&fields.schema_version.to_be_bytes());
    put_field(&mut buffer, fields.data.as_bytes());
    put_field(&mut buffer, fields.metadata.as_bytes());
    buffer.extend_from_slice(&fields.recorded_at_micros.to_be_bytes());
    Hash(Sha256::digest(&buffer).into())
}

fn put_field(buffer: &mut Vec<u8>, bytes: &[u8]) {
    // Length-prefixed so that no two different field lists share a byte string.
    buffer.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    buffer.extend_from_slice(bytes);
}

/// The canonical JSON text of a value: object keys sorted, no white space. Events are stored
/// as this exact text (PostgreSQL `json`, SQLite `TEXT`, both keep it byte for byte), so the
/// hash is computed over the stored bytes and verifying needs no JSON parsing at all.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_canonical_json(&mut out, value);
    out
}

fn write_canonical_json(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(out, key);
                out.push(':');
                write_canonical_json(out, &map[key]);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical_json(out, item);
            }
            out.push(']');
        }
        Value::String(text) => write_json_string(out, text),
        Value::Number(number) => out.push_str(&number.to_string()),
        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Null => out.push_str("null"),
    }
}

fn write_json_string(out: &mut String, text: &str) {
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Where and how the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("position {found} follows position {previous}: events are missing or reordered")]
    Gap { previous: u64, found: u64 },
    #[error("event at position {position} does not link to the hash of the event before it")]
    BrokenLink { position: u64 },
    #[error("event at position {position} does not match its stored hash: it was altered")]
    Altered { position: u64 },
}

/// Walks events in position order and checks each link; feed it pages as they are read.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    last_position: u64,
    last_hash: Hash,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self {
            last_position: 0,
            last_hash: Hash::GENESIS,
        }
    }
}

/// What one page of consecutive rows says about its own links, checked on its own (so pages
/// can be checked in parallel) and joined to the page before by [`ChainVerifier::join`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageLinks {
    pub first_position: u64,
    pub first_prev_hash: Hash,
    /// Position and hash of the last row before the page's first break (the page's last row
    /// when it has none); `None` when its first row is already broken.
    pub verified_to: Option<(u64, Hash)>,
    /// The first break inside the page, its first row's link to the page before excepted.
    pub first_break: Option<ChainBreak>,
}

/// Checks the rows of one page against each other and against their stored hashes: every
/// check [`ChainVerifier::check`] makes, except the first row's position and link, which
/// depend on the page before. `None` for an empty page.
pub fn check_links(events: &[RecordedEvent]) -> Option<PageLinks> {
    let first = events.first()?;
    let mut verified_to = None;
    let mut first_break = None;
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            let previous = &events[i - 1];
            if event.position != previous.position + 1 {
                first_break = Some(ChainBreak::Gap {
                    previous: previous.position,
                    found: event.position,
                });
                break;
            }
            if event.prev_hash != previous.hash {
                first_break = Some(ChainBreak::BrokenLink {
                    position: event.position,
                });
                break;
            }
        }
        if event.compute_hash() != event.hash {
            first_break = Some(ChainBreak::Altered {
                position: event.position,
            });
            break;
        }
        verified_to = Some((event.position, event.hash));
    }
    Some(PageLinks {
        first_position: first.position,
        first_prev_hash: first.prev_hash,
        verified_to,
        first_break,
    })
}

impl ChainVerifier {
    /// Goes on from an event already verified: the next must be at `position + 1` and link
    /// to `hash`.
    pub fn resume(position: u64, hash: Hash) -> Self {
        Self {
            last_position: position,
            last_hash: hash,
        }
    }

    /// Joins the next page, checked by [`check_links`]: the same answer, break for break,
    /// as [`ChainVerifier::check`] on each of its rows in turn.
    pub fn join(&mut self, links: &PageLinks) -> Result<(), ChainBreak> {
        if links.first_position != self.last_position + 1 {
            return Err(ChainBreak::Gap {
                previous: self.last_position,
                found: links.first_position,
            });
        }
        if links.first_prev_hash != self.last_hash {
            return Err(ChainBreak::BrokenLink {
                position: links.first_position,
            });
        }
        if let Some((position, hash)) = links.verified_to {
            self.last_position = position;
            self.last_hash = hash;
        }
        match &links.first_break {
            Some(chain_break) => Err(chain_break.clone()),
            None => Ok(()),
        }
    }

    pub fn check(&mut self, event: &RecordedEvent) -> Result<(), ChainBreak> {
        if event.position != self.last_position + 1 {
            return Err(ChainBreak::Gap {
                previous: self.last_position,
                found: event.position,
            });
        }
        if event.prev_hash != self.last_hash {
            return Err(ChainBreak::BrokenLink {
                position: event.position,
            });
        }
        if event.compute_hash() != event.hash {
            return Err(ChainBreak::Altered {
                position: event.position,
            });
        }
        self.last_position = event.position;
        self.last_hash = event.hash;
        Ok(())
    }

    pub fn last_position(&self) -> u64 {
        self.last_position
    }

    pub fn last_hash(&self) -> Hash {
        self.last_hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_and_escapes() {
        let mut out = String::new();
        write_canonical_json(
            &mut out,
            &json!({"b": [1, "x\"y"], "a": {"d": null, "c": true}}),
        );
        assert_eq!(out, r#"{"a":{"c":true,"d":null},"b":[1,"x\"y"]}"#);
    }

    #[test]
    fn canonical_json_agrees_with_serde_on_strings() {
        for text in [
            "plain",
            "quote\"",
            "back\\slash",
            "ctl\u{1}",
            "юникод",
            "tab\t",
            "\u{7f}",
        ] {
            let mut ours = String::new();
            write_json_string(&mut ours, text);
            let theirs: String = serde_json::from_str(&ours).unwrap();
            assert_eq!(theirs, text);
        }
    }
}
