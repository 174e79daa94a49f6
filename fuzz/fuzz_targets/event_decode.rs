//! Stored events: decoding and upcasting whatever a row might hold.
//!
//! The input is `TYPE\nVERSION\nDATA` (the seeds are real events from `audit export` in that
//! shape), so the fuzzer varies the event type, the schema version and the JSON alike.
//! Decoding never panics; an event that decodes, written back at its current version, decodes
//! to the same event (upcasting is a fixed point after one step).
#![no_main]

use libfuzzer_sys::fuzz_target;
use starledger_ledger::events::AccountEvent;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let (Some(event_type), Some(version), Some(json)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let version = version.trim().parse::<i32>().unwrap_or(i32::MIN);
    let Ok(event) = AccountEvent::decode(event_type, version, json) else {
        return;
    };
    let current = event.to_data().to_string();
    match AccountEvent::decode(event.event_type(), event.schema_version(), &current) {
        Ok(again) if again == event => {}
        other => panic!(
            "{event_type} v{version} decoded, but its current form {current} gives {other:?}"
        ),
    }
});
