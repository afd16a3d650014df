//! The append rules every backend applies the same way, as pure functions:
//! validating a batch, telling a retry from a clash of ids, checking the
//! expected version. Synchronous, no I/O.

use std::collections::HashSet;

use crate::envelope::{AppendResult, ExpectedVersion, NewEvent};
use crate::error::{Conflict, DuplicateEvent, EventStoreError, InvalidEvent};
use crate::settings::{MAX_BATCH_SIZE, MAX_NAME_LEN};

/// An event id already in the store, where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredId {
    pub(crate) id: String,
    pub(crate) stream: String,
    pub(crate) version: u64,
    pub(crate) position: u64,
}

fn check_name(field: &'static str, value: &str) -> Result<(), InvalidEvent> {
    if value.is_empty() {
        return Err(InvalidEvent::new(field, "is empty"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(InvalidEvent::new(
            field,
            format!("is {} bytes, more than {MAX_NAME_LEN}", value.len()),
        ));
    }
    Ok(())
}

/// Checks a batch before any I/O: names not empty nor too long, at most
/// [`MAX_BATCH_SIZE`] events, no id twice.
pub(crate) fn validate_batch(stream: &str, events: &[NewEvent]) -> Result<(), EventStoreError> {
    check_name("stream", stream)?;
    if events.len() > MAX_BATCH_SIZE {
        return Err(InvalidEvent::new(
            "events",
            format!("{} events, more than {MAX_BATCH_SIZE}", events.len()),
        )
        .into());
    }
    let mut seen = HashSet::with_capacity(events.len());
    for event in events {
        check_name("id", &event.id)?;
        check_name("event_type", &event.event_type)?;
        if !seen.insert(event.id.as_str()) {
            return Err(DuplicateEvent::new(&event.id, "repeated in the batch").into());
        }
    }
    Ok(())
}

/// Given the batch's ids already stored (`found`, any order): `Ok(None)`
/// when none is (write the batch), `Ok(Some(result))` when the batch is a
/// retry of a stored one (every id stored, in `stream`, at contiguous
/// versions in the batch's order: return the original positions and write
/// nothing), else the clash.
pub(crate) fn classify_stored(
    stream: &str,
    events: &[NewEvent],
    found: &[StoredId],
) -> Result<Option<AppendResult>, DuplicateEvent> {
    if found.is_empty() {
        return Ok(None);
    }
    let lookup = |id: &str| found.iter().find(|s| s.id == id);
    let mut positions = Vec::with_capacity(events.len());
    let mut previous: Option<u64> = None;
    for event in events {
        let Some(stored) = lookup(&event.id) else {
            let first = found.first().map_or(event.id.as_str(), |s| s.id.as_str());
            return Err(DuplicateEvent::new(
                first,
                "the batch mixes stored and new event ids",
            ));
        };
        if stored.stream != stream {
            return Err(DuplicateEvent::new(
                &event.id,
                "the id is stored in another stream",
            ));
        }
        if previous.is_some_and(|p| p + 1 != stored.version) {
            return Err(DuplicateEvent::new(
                &event.id,
                "the id is stored, not in this batch's order",
            ));
        }
        previous = Some(stored.version);
        positions.push(stored.position);
    }
    Ok(Some(AppendResult {
        version: previous.unwrap_or(0),
        positions,
        already_stored: true,
    }))
}

/// Checks `expected` against the stream's `current` version.
pub(crate) fn check_expected(
    stream: &str,
    expected: ExpectedVersion,
    current: u64,
) -> Result<(), Conflict> {
    if expected.matches(current) {
        Ok(())
    } else {
        Err(Conflict::new(stream, expected, current))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str) -> NewEvent {
        NewEvent::new(id, "t", serde_json::Value::Null)
    }

    fn stored(id: &str, stream: &str, version: u64, position: u64) -> StoredId {
        StoredId {
            id: id.into(),
            stream: stream.into(),
            version,
            position,
        }
    }

    #[test]
    fn expected_versions() {
        assert!(ExpectedVersion::Any.matches(7));
        assert!(ExpectedVersion::NoStream.matches(0));
        assert!(!ExpectedVersion::NoStream.matches(1));
        assert!(ExpectedVersion::Exact(0).matches(0));
        assert!(ExpectedVersion::Exact(3).matches(3));
        let err = check_expected("s", ExpectedVersion::Exact(2), 3).unwrap_err();
        assert_eq!(
            (err.expected(), err.actual()),
            (ExpectedVersion::Exact(2), 3)
        );
        assert_eq!(
            err.to_string(),
            "stream \"s\" is at version 3, the append expected version 2"
        );
    }

    #[test]
    fn batch_validation() {
        assert!(validate_batch("s", &[ev("a"), ev("b")]).is_ok());
        assert!(validate_batch("s", &[]).is_ok());
        assert!(matches!(
            validate_batch("", &[ev("a")]),
            Err(EventStoreError::Invalid(e)) if e.field() == "stream"
        ));
        assert!(matches!(
            validate_batch("s", &[ev("")]),
            Err(EventStoreError::Invalid(e)) if e.field() == "id"
        ));
        assert!(matches!(
            validate_batch("s", &[ev("a"), ev("a")]),
            Err(EventStoreError::Duplicate(e)) if e.event_id() == "a"
        ));
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert!(validate_batch(&long, &[]).is_err());
    }

    #[test]
    fn retries_and_clashes() {
        let batch = [ev("a"), ev("b")];
        assert_eq!(classify_stored("s", &batch, &[]), Ok(None));
        let retry = classify_stored(
            "s",
            &batch,
            &[stored("b", "s", 5, 11), stored("a", "s", 4, 10)],
        )
        .unwrap()
        .unwrap();
        assert_eq!((retry.version(), retry.positions()), (5, &[10, 11][..]));
        assert!(retry.already_stored());

        let mixed = classify_stored("s", &batch, &[stored("a", "s", 4, 10)]).unwrap_err();
        assert_eq!(mixed.event_id(), "a");
        let elsewhere = classify_stored(
            "s",
            &batch,
            &[stored("a", "t", 4, 10), stored("b", "t", 5, 11)],
        )
        .unwrap_err();
        assert_eq!(elsewhere.reason(), "the id is stored in another stream");
        let reordered = classify_stored(
            "s",
            &batch,
            &[stored("a", "s", 5, 11), stored("b", "s", 4, 10)],
        )
        .unwrap_err();
        assert_eq!(reordered.event_id(), "b");
    }
}
