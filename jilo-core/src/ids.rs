//! Identifiers and time stamps shared by every part of jilo.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps an identifier given by the host application or a service.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }
    };
}

string_id!(
    /// A user of the host application, as the host names them (jilo never invents user ids).
    UserId
);
string_id!(
    /// A video provider's name inside jilo (`"fal"`, `"suchuang"`, …), used for routing webhooks.
    ProviderId
);
string_id!(
    /// A generation job. New ids are random UUIDs; stores keep them as text.
    JobId
);

impl JobId {
    /// A fresh random job id.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
}

/// A point in time as whole milliseconds since the Unix epoch (UTC).
///
/// Integers keep every store (memory, SQLite, Postgres) exact and comparable. `Display` and
/// `Debug` show it as RFC 3339 (`2026-12-05T08:00:00Z`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Milliseconds since the Unix epoch.
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Converts a system time; times before 1970 become 0.
    pub fn from_system(time: SystemTime) -> Self {
        let millis = time
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self(millis)
    }

    /// The same instant as a [`SystemTime`].
    pub fn to_system(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(u64::try_from(self.0).unwrap_or(0))
    }

    /// This instant moved forward by `d` (saturating).
    pub fn plus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// The time from `earlier` to `self`, zero when `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// The UTC calendar day this instant falls on, as days since the epoch.
    ///
    /// The daily generation cap counts holds per UTC day.
    pub fn utc_day(self) -> i64 {
        self.0.div_euclid(86_400_000)
    }
}

impl Timestamp {
    /// The same instant for civil-time arithmetic, clamped to the years -9999 to 9999.
    pub(crate) fn jiff(self) -> jiff::Timestamp {
        jiff::Timestamp::from_millisecond(self.0).unwrap_or(if self.0 > 0 {
            jiff::Timestamp::MAX
        } else {
            jiff::Timestamp::MIN
        })
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC, with milliseconds when there are any.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match jiff::Timestamp::from_millisecond(self.0) {
            Ok(t) => write!(f, "{t}"),
            Err(_) => write!(f, "{} ms after the epoch", self.0),
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

/// A calendar month in UTC: a plan's billing period and a monthly allowance's life
/// (`jilo_core::plans::PlanPeriod`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PlanPeriod {
    year: i64,
    month: u32,
}

impl PlanPeriod {
    /// The month holding `at`.
    pub fn containing(at: Timestamp) -> Self {
        let date = at.jiff().to_zoned(jiff::tz::TimeZone::UTC).date();
        Self {
            year: i64::from(date.year()),
            month: u32::try_from(date.month()).unwrap_or(1),
        }
    }

    /// The month after.
    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// Its first instant.
    pub fn start(self) -> Timestamp {
        // Past the years a calendar names: the end (or the start) of time.
        if self.year > 9999 {
            return Timestamp::from_millis(i64::MAX);
        }
        let year = i16::try_from(self.year.max(-9999)).unwrap_or(-9999);
        let month = i8::try_from(self.month.clamp(1, 12)).unwrap_or(1);
        jiff::civil::Date::new(year, month, 1)
            .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC))
            .map_or(Timestamp::from_millis(i64::MAX), |z| {
                Timestamp::from_millis(z.timestamp().as_millisecond())
            })
    }

    /// The first instant of the next month: when its allowance expires.
    pub fn end(self) -> Timestamp {
        self.next().start()
    }

    /// `YYYY-MM`.
    pub fn label(self) -> String {
        format!("{:04}-{:02}", self.year, self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_as_rfc_3339() {
        assert_eq!(
            Timestamp::from_millis(0).to_string(),
            "1970-01-01T00:00:00Z"
        );
        let t = Timestamp::from_millis(1_796_472_000_123);
        assert_eq!(t.to_string(), "2026-12-05T12:00:00.123Z");
        assert_eq!(format!("{t:?}"), "Timestamp(2026-12-05T12:00:00.123Z)");
        // Beyond the years a calendar names: still readable, never a panic.
        assert_eq!(
            Timestamp::from_millis(i64::MAX).to_string(),
            format!("{} ms after the epoch", i64::MAX)
        );
    }

    #[test]
    fn timestamp_arithmetic_saturates_and_counts_days() {
        let t = Timestamp::from_millis(86_400_000 * 3 + 5);
        assert_eq!(t.utc_day(), 3);
        assert_eq!(
            t.plus(Duration::from_millis(10)).as_millis(),
            86_400_000 * 3 + 15
        );
        assert_eq!(t.since(t.plus(Duration::from_secs(1))), Duration::ZERO);
        assert_eq!(Timestamp::from_millis(-1).utc_day(), -1);
        let sys = t.to_system();
        assert_eq!(Timestamp::from_system(sys), t);
    }

    #[test]
    fn ids_display_their_text() {
        assert_eq!(UserId::from("u-1").to_string(), "u-1");
        assert_ne!(JobId::random(), JobId::random());
    }
}
