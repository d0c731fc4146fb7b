//! Time as the metadata sees it: whole Unix seconds, passed in by the caller.
//!
//! Nothing in this crate reads the clock. The producer is told when "now" is so a server can
//! sign a batch with one consistent time, and the client is told so tests can move time
//! forward to expire metadata (and so a host can refuse a clock that went backwards).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// How long a root stays valid. Root keys live offline and are brought out for a ceremony, so
/// the root is re-signed rarely; a year gives an operator time to notice the warning
/// (`keys show` warns 60 days ahead) and gather the key holders.
pub const ROOT_LIFETIME: Duration = Duration::from_secs(365 * DAY);

/// How long the top-level targets role stays valid. It only delegates to the bins and changes
/// when the bins key does; it is re-signed automatically when under 30 days are left.
pub const TARGETS_LIFETIME: Duration = Duration::from_secs(90 * DAY);

/// How long a bin stays valid at most. A bin is re-signed on every change to it, and
/// automatically when under 30 days are left, so a quiet bin still never expires.
pub const BIN_LIFETIME: Duration = Duration::from_secs(90 * DAY);

/// How much shorter than [`BIN_LIFETIME`] a bin's lifetime can be (see [`bin_lifetime`]).
pub const BIN_LIFETIME_SPREAD: Duration = Duration::from_secs(29 * DAY);

/// The lifetime of the bin at `index`: [`BIN_LIFETIME`] less a share of
/// [`BIN_LIFETIME_SPREAD`] that grows with the index. The 4096 bins of a new repository are
/// signed in one round; with one lifetime they would all come due for re-signing in one
/// round again 60 days later, and every round after. Spread, they come due a few a day over
/// a month, and each keeps its place: a bin re-signed when it comes due gets the same
/// lifetime again. Every lifetime stays above the 30-day refresh margin.
#[must_use]
pub fn bin_lifetime(index: usize) -> Duration {
    let slots = crate::layout::BIN_COUNT as u64;
    let spread = BIN_LIFETIME_SPREAD.as_secs() * (index as u64 % slots) / slots;
    BIN_LIFETIME - Duration::from_secs(spread)
}

/// How long a snapshot stays valid. It is re-signed on every change and at least daily, so a
/// week is slack for a server outage, not a window an attacker needs.
pub const SNAPSHOT_LIFETIME: Duration = Duration::from_secs(7 * DAY);

/// How long a timestamp stays valid. This bounds how long a compromised mirror or network can
/// freeze a client on old metadata: the server re-signs it every 4 hours, and a client refuses
/// a timestamp older than this.
pub const TIMESTAMP_LIFETIME: Duration = Duration::from_secs(DAY);

const DAY: u64 = 24 * 60 * 60;

/// A point in time in whole seconds since the Unix epoch (UTC).
///
/// TUF writes expiries as RFC 3339 strings; this type is what the rest of plugstore passes
/// around, and it displays in RFC 3339 for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixTime(i64);

impl UnixTime {
    /// The time `seconds` after the Unix epoch.
    pub const fn from_seconds(seconds: i64) -> Self {
        Self(seconds)
    }

    /// Seconds since the Unix epoch.
    pub const fn as_seconds(self) -> i64 {
        self.0
    }

    /// The current system time. Only for callers at the edge: library code takes a `now`.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// This time plus `duration`, saturating instead of overflowing.
    pub fn plus(self, duration: Duration) -> Self {
        let seconds = i64::try_from(duration.as_secs()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(seconds))
    }

    /// This time minus `duration`, saturating instead of overflowing.
    pub fn minus(self, duration: Duration) -> Self {
        let seconds = i64::try_from(duration.as_secs()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(seconds))
    }

    /// The jiff timestamp tough's schema types use; `None` outside the years jiff represents
    /// (-9999..=9999), which no expiry we write comes near.
    pub(crate) fn to_jiff(self) -> Option<jiff::Timestamp> {
        jiff::Timestamp::from_second(self.0).ok()
    }

    /// Rounds sub-second expiries written by other producers down, so a comparison with a
    /// whole-second `now` never treats expired metadata as valid.
    pub(crate) fn from_jiff(timestamp: jiff::Timestamp) -> Self {
        let seconds = timestamp.as_second();
        if timestamp.subsec_nanosecond() < 0 {
            Self(seconds.saturating_sub(1))
        } else {
            Self(seconds)
        }
    }
}

impl From<SystemTime> for UnixTime {
    fn from(time: SystemTime) -> Self {
        match time.duration_since(UNIX_EPOCH) {
            Ok(after) => Self(i64::try_from(after.as_secs()).unwrap_or(i64::MAX)),
            Err(before) => Self(-i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX)),
        }
    }
}

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_jiff() {
            Some(timestamp) => write!(f, "{timestamp}"),
            None => write!(f, "{} seconds after the Unix epoch", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_as_rfc3339() {
        assert_eq!(
            UnixTime::from_seconds(1_767_225_600).to_string(),
            "2026-01-01T00:00:00Z"
        );
    }

    #[test]
    fn sub_second_expiries_round_down() {
        let timestamp: jiff::Timestamp = "2026-01-01T00:00:00.5Z".parse().unwrap();
        assert_eq!(UnixTime::from_jiff(timestamp).as_seconds(), 1_767_225_600);
        let before_epoch: jiff::Timestamp = "1969-12-31T23:59:59.5Z".parse().unwrap();
        assert_eq!(UnixTime::from_jiff(before_epoch).as_seconds(), -1);
    }
}
