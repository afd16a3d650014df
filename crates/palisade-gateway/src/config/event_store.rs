//! `[event_store]`: where the accounts' events and balances live, the event
//! store crate's own [`EventStoreSettings`] in the gateway's keys.
//!
//! The table deserializes straight into `EventStoreSettings` (its fields
//! are the keys, unknown keys refused), after the gateway's `_ms` keys are
//! rewritten into the crate's duration strings (`busy_timeout_ms = 5000` is
//! `busy_timeout = "5s"`), and is checked by the crate's side-effect-free
//! `validate()`, an error placed at the key written for its field. Without
//! the table the crate's defaults apply: a SQLite file
//! `palisade-events.db` in the working directory, nothing to set up.
//! `url = "postgres://..."` puts the events and the balances in PostgreSQL;
//! `url = "memory:"` keeps them in the process (tests).

use palisade::event_store::EventStoreSettings;

use super::document::Seg;
use super::{Checker, ConfigFileError};

impl Checker<'_> {
    /// Checks `[event_store]` with the crate's `validate()`.
    pub(super) fn event_store(
        &self,
        settings: Option<EventStoreSettings>,
    ) -> Result<EventStoreSettings, ConfigFileError> {
        let settings = settings.unwrap_or_default();
        settings
            .validate()
            .map_err(|e| self.settings_err(&[Seg::Key("event_store")], "event_store", &e))?;
        Ok(settings)
    }
}
