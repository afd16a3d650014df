//! `[deadline]`: the deadline every route gives a request, the deadline
//! crate's own [`DeadlineSettings`] in the gateway's keys.
//!
//! The table deserializes straight into `DeadlineSettings` (its fields are
//! the keys, unknown keys refused), after the gateway's `_ms` keys are
//! rewritten into the crate's duration strings (`budget_ms = 3000` is
//! `budget = "3s"`), and is checked by the crate's side-effect-free
//! `validate()`, an error placed at the key written for its field. Without
//! the table the crate's defaults apply: no budget of the gateway's own, the
//! caller's `x-palisade-timeout-ms` and `grpc-timeout` honoured.

use palisade::deadline::DeadlineSettings;

use super::document::Seg;
use super::{Checker, ConfigFileError};

impl Checker<'_> {
    /// Checks `[deadline]` with the crate's `validate()`.
    pub(super) fn deadline(
        &self,
        settings: Option<DeadlineSettings>,
    ) -> Result<DeadlineSettings, ConfigFileError> {
        let settings = settings.unwrap_or_default();
        settings
            .validate()
            .map_err(|e| self.settings_err(&[Seg::Key("deadline")], "deadline", &e))?;
        Ok(settings)
    }
}
