//! [`FallbackSettings`] and the failure classes a fallback may answer.

use std::fmt;

use palisade_core::ConfigError;

/// A class of failure a fallback may answer.
///
/// | class | what failed |
/// |---|---|
/// | `circuit-open` | a circuit breaker below refused the call ([`CircuitOpen`](palisade_core::CircuitOpen)) |
/// | `bulkhead-full` | a bulkhead below refused it ([`BulkheadFull`](palisade_core::BulkheadFull)) |
/// | `rate-limited` | a rate limiter below refused it ([`RateLimited`](palisade_core::RateLimited)) |
/// | `deadline` | the request's deadline passed ([`DeadlineExpired`](palisade_core::DeadlineExpired)) |
/// | `error` | any other error the classifier calls a failure (a transport error, a timeout) |
/// | `response` | a response the classifier calls a failure (a `503`) |
///
/// Rejections and expired deadlines are found anywhere in the error's
/// source chain, whatever the classifier says of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum FallbackClass {
    /// A circuit breaker refused the call.
    CircuitOpen,
    /// A bulkhead refused the call.
    BulkheadFull,
    /// A rate limiter refused the call.
    RateLimited,
    /// The request's deadline passed.
    Deadline,
    /// Another error the classifier calls a failure.
    Error,
    /// A response the classifier calls a failure.
    Response,
}

impl FallbackClass {
    /// Every class, in order.
    pub const ALL: [Self; 6] = [
        Self::CircuitOpen,
        Self::BulkheadFull,
        Self::RateLimited,
        Self::Deadline,
        Self::Error,
        Self::Response,
    ];

    /// The class's label in metrics, headers and settings: `circuit-open`,
    /// `bulkhead-full`, `rate-limited`, `deadline`, `error`, `response`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CircuitOpen => "circuit-open",
            Self::BulkheadFull => "bulkhead-full",
            Self::RateLimited => "rate-limited",
            Self::Deadline => "deadline",
            Self::Error => "error",
            Self::Response => "response",
        }
    }

    /// `true` for the three rejections.
    #[must_use]
    pub const fn is_rejection(self) -> bool {
        matches!(
            self,
            Self::CircuitOpen | Self::BulkheadFull | Self::RateLimited
        )
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for FallbackClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`FallbackClass`]es: which failures a fallback answers. `Copy`;
/// a list of class names in TOML (`on = ["circuit-open", "deadline"]`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FallbackClasses(u8);

impl FallbackClasses {
    /// Every class: any failure or rejection is answered.
    pub const ALL: Self = Self(0b11_1111);
    /// No class.
    pub const NONE: Self = Self(0);
    /// The three rejections (open breaker, full bulkhead, rate limited): "the
    /// call was refused", answered while the dependency is shielded.
    pub const REJECTIONS: Self = Self(0b111);

    /// This set and `class`.
    #[must_use]
    pub const fn with(self, class: FallbackClass) -> Self {
        Self(self.0 | class.bit())
    }

    /// This set without `class`.
    #[must_use]
    pub const fn without(self, class: FallbackClass) -> Self {
        Self(self.0 & !class.bit())
    }

    /// `true` if `class` is in the set.
    #[must_use]
    pub const fn contains(self, class: FallbackClass) -> bool {
        self.0 & class.bit() != 0
    }

    /// `true` if the set is empty.
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The classes in the set, in order.
    pub fn iter(self) -> impl Iterator<Item = FallbackClass> {
        FallbackClass::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }
}

impl Default for FallbackClasses {
    fn default() -> Self {
        Self::ALL
    }
}

impl FromIterator<FallbackClass> for FallbackClasses {
    fn from_iter<I: IntoIterator<Item = FallbackClass>>(iter: I) -> Self {
        iter.into_iter().fold(Self::NONE, Self::with)
    }
}

impl<const N: usize> From<[FallbackClass; N]> for FallbackClasses {
    fn from(classes: [FallbackClass; N]) -> Self {
        classes.into_iter().collect()
    }
}

impl fmt::Debug for FallbackClasses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for FallbackClasses {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for FallbackClasses {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let classes = Vec::<FallbackClass>::deserialize(deserializer)?;
        Ok(classes.into_iter().collect())
    }
}

/// The settings of a [`FallbackLayer`](crate::FallbackLayer). The builder's
/// setters and the gateway's TOML keys have these names.
///
/// | setting | default | meaning |
/// |---|---|---|
/// | `on` | every class | which failures the fallback answers |
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct FallbackSettings {
    /// Which failures the fallback answers (default: every class).
    pub on: FallbackClasses,
}

impl FallbackSettings {
    /// Checks every setting, without side effects.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `on` when it is empty: a fallback that
    /// answers nothing is a configuration mistake.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.on.is_empty() {
            return Err(ConfigError::new(
                "on",
                "must name at least one class of failure to answer",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets() {
        let set = FallbackClasses::NONE
            .with(FallbackClass::Deadline)
            .with(FallbackClass::CircuitOpen);
        assert!(set.contains(FallbackClass::Deadline));
        assert!(!set.contains(FallbackClass::Error));
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [FallbackClass::CircuitOpen, FallbackClass::Deadline]
        );
        assert_eq!(FallbackClasses::ALL.iter().count(), 6);
        assert!(
            FallbackClasses::REJECTIONS
                .iter()
                .all(FallbackClass::is_rejection)
        );
        assert_eq!(FallbackClasses::REJECTIONS.iter().count(), 3);
        assert_eq!(
            FallbackClasses::ALL.without(FallbackClass::Response),
            FallbackClasses::from([
                FallbackClass::CircuitOpen,
                FallbackClass::BulkheadFull,
                FallbackClass::RateLimited,
                FallbackClass::Deadline,
                FallbackClass::Error,
            ])
        );
        assert_eq!(format!("{set:?}"), "{CircuitOpen, Deadline}");
        for (i, c) in FallbackClass::ALL.into_iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }
}
