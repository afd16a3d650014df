//! [`Figures`]: what a store counts for its handle's snapshot, shared by the
//! store, its clones and its handles.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::settings::EventStoreSettings;

/// A store's running figures: relaxed atomic counters, one increment per
/// append or read (never per event).
#[derive(Debug)]
pub(crate) struct Figures {
    pub(crate) name: Arc<str>,
    /// `memory`, `sqlite`, `postgres` or `custom`.
    pub(crate) backend: &'static str,
    /// The settings, the URL cut to its scheme (a URL may carry a password).
    pub(crate) settings: EventStoreSettings,
    pub(crate) appends: AtomicU64,
    pub(crate) events_appended: AtomicU64,
    pub(crate) already_stored: AtomicU64,
    pub(crate) conflicts: AtomicU64,
    pub(crate) append_errors: AtomicU64,
    pub(crate) events_read: AtomicU64,
    pub(crate) read_errors: AtomicU64,
    pub(crate) upcast_failures: AtomicU64,
    pub(crate) head: AtomicU64,
}

impl Figures {
    pub(crate) fn new(
        name: Arc<str>,
        backend: &'static str,
        settings: &EventStoreSettings,
    ) -> Self {
        let mut settings = settings.clone();
        settings.url = redact(&settings.url);
        Self {
            name,
            backend,
            settings,
            appends: AtomicU64::new(0),
            events_appended: AtomicU64::new(0),
            already_stored: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            append_errors: AtomicU64::new(0),
            events_read: AtomicU64::new(0),
            read_errors: AtomicU64::new(0),
            upcast_failures: AtomicU64::new(0),
            head: AtomicU64::new(0),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The URL without what follows its scheme's `//` host part's credentials:
/// `postgres://u:secret@h/db` → `postgres://h/db`; a SQLite path stays.
pub(crate) fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((_, host)) = rest.split_once('@')
    {
        return format!("{scheme}://{host}");
    }
    url.to_owned()
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn credentials_are_cut() {
        assert_eq!(redact("postgres://u:pw@db:5432/x"), "postgres://db:5432/x");
        assert_eq!(redact("postgres://db/x"), "postgres://db/x");
        assert_eq!(redact("sqlite:events.db"), "sqlite:events.db");
    }
}
