//! [`MemoryBackend`]: events in the process, for tests and examples.
//!
//! An append takes one lock for its whole check-and-write (there is no
//! `.await` inside), so appends are atomic, cancellation cannot cut one in
//! half, and positions become visible in order.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::backend::Backend;
use crate::envelope::{AppendResult, ExpectedVersion, NewEvent, RecordedEvent, now_micros};
use crate::error::{EventStoreError, StoreError};
use crate::snapshot::Snapshot;
use crate::state::{StoredId, check_expected, classify_stored, validate_batch};

#[derive(Debug, Default)]
struct State {
    /// Every event; position `p` is at index `p - 1`.
    events: Vec<RecordedEvent>,
    /// Each stream's events, as indexes into `events`; version `v` at `v - 1`.
    streams: HashMap<Arc<str>, Vec<usize>>,
    /// Event id to index into `events`.
    ids: HashMap<Arc<str>, usize>,
    snapshots: HashMap<Arc<str>, Snapshot>,
}

/// Events in the process. Cloning shares the events.
#[derive(Clone, Debug, Default)]
pub struct MemoryBackend {
    state: Arc<Mutex<State>>,
}

impl MemoryBackend {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn append_now(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, EventStoreError> {
        validate_batch(stream, events)?;
        let mut state = self.state.lock();
        let found: Vec<StoredId> = events
            .iter()
            .filter_map(|e| state.ids.get(e.id.as_str()))
            .map(|&index| {
                let stored = &state.events[index];
                StoredId {
                    id: stored.id.to_string(),
                    stream: stored.stream.to_string(),
                    version: stored.version,
                    position: stored.position,
                }
            })
            .collect();
        if let Some(retry) = classify_stored(stream, events, &found)? {
            return Ok(retry);
        }
        let current = state.streams.get(stream).map_or(0, |s| s.len() as u64);
        check_expected(stream, expected, current)?;
        if events.is_empty() {
            return Ok(AppendResult {
                version: current,
                positions: Vec::new(),
                already_stored: false,
            });
        }
        let stream: Arc<str> = state
            .streams
            .get_key_value(stream)
            .map_or_else(|| stream.into(), |(k, _)| Arc::clone(k));
        let recorded_at = now_micros();
        let mut positions = Vec::with_capacity(events.len());
        let mut indexes = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            let index = state.events.len();
            let position = index as u64 + 1;
            let id: Arc<str> = event.id.as_str().into();
            state.events.push(RecordedEvent {
                id: Arc::clone(&id),
                stream: Arc::clone(&stream),
                version: current + i as u64 + 1,
                position,
                event_type: event.event_type.as_str().into(),
                schema_version: event.schema_version,
                recorded_at_micros: recorded_at,
                metadata: Arc::new(event.metadata.clone()),
                payload: Arc::new(event.payload.clone()),
                upcast_failure: None,
            });
            state.ids.insert(id, index);
            indexes.push(index);
            positions.push(position);
        }
        state.streams.entry(stream).or_default().extend(indexes);
        Ok(AppendResult {
            version: current + events.len() as u64,
            positions,
            already_stored: false,
        })
    }
}

impl Backend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, EventStoreError> {
        self.append_now(stream, expected, events)
    }

    async fn read_stream(
        &self,
        stream: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let state = self.state.lock();
        let Some(indexes) = state.streams.get(stream) else {
            return Ok(Vec::new());
        };
        let skip = usize::try_from(from.saturating_sub(1)).unwrap_or(usize::MAX);
        Ok(indexes
            .iter()
            .skip(skip)
            .take(max)
            .map(|&i| state.events[i].clone())
            .collect())
    }

    async fn read_stream_backward(
        &self,
        stream: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let state = self.state.lock();
        let Some(indexes) = state.streams.get(stream) else {
            return Ok(Vec::new());
        };
        let end = usize::try_from(from)
            .unwrap_or(usize::MAX)
            .min(indexes.len());
        Ok(indexes[..end]
            .iter()
            .rev()
            .take(max)
            .map(|&i| state.events[i].clone())
            .collect())
    }

    async fn read_all(&self, after: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let state = self.state.lock();
        let start = usize::try_from(after).unwrap_or(usize::MAX);
        Ok(state.events.iter().skip(start).take(max).cloned().collect())
    }

    async fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        Ok(self
            .state
            .lock()
            .streams
            .get(stream)
            .map_or(0, |s| s.len() as u64))
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        Ok(self.state.lock().events.len() as u64)
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.state
            .lock()
            .snapshots
            .insert(Arc::clone(&snapshot.stream), snapshot.clone());
        Ok(())
    }

    async fn load_snapshot(&self, stream: &str) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.state.lock().snapshots.get(stream).cloned())
    }
}
