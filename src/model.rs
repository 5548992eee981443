//! The synced part of a calendar item, independent of where it lives.
//!
//! `Fields` are what a platform can hold (for the Web Meeting API v6: topic,
//! start/end, agenda, recurrence, invitees). Everything else in an event stays
//! local-only: never pushed, never treated as deleted. No I/O here.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A start or end: an instant (with the zone it was written in, for writing
/// it back the same way), or an all-day date.
#[derive(Debug, Clone, Serialize, Deserialize, Eq)]
pub enum When {
    /// Unix seconds; `tzid` is the IANA zone of the original (None = UTC/floating).
    Instant { unix: i64, tzid: Option<String> },
    /// An all-day date.
    Date(chrono::NaiveDate),
}

/// Two instants are the same time whatever zone they were written in.
impl PartialEq for When {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (When::Instant { unix: a, .. }, When::Instant { unix: b, .. }) => a == b,
            (When::Date(a), When::Date(b)) => a == b,
            _ => false,
        }
    }
}

impl When {
    pub fn unix(&self) -> i64 {
        match self {
            When::Instant { unix, .. } => *unix,
            When::Date(d) => d
                .and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc().timestamp())
                .unwrap_or(0),
        }
    }
}

impl fmt::Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            When::Instant { unix, .. } => match chrono::DateTime::from_timestamp(*unix, 0) {
                Some(t) => write!(f, "{}", t.format("%Y-%m-%dT%H:%M:%SZ")),
                None => write!(f, "@{unix}"),
            },
            When::Date(d) => write!(f, "{d}"),
        }
    }
}

/// The fields a platform holds. Text is unescaped; attendees are lowercase
/// email addresses; `rrule` is the RRULE value as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Fields {
    pub summary: String,
    pub description: String,
    pub start: Option<When>,
    pub end: Option<When>,
    pub rrule: Option<String>,
    pub attendees: BTreeSet<String>,
}

/// One synced field, for merges and conflict reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Field {
    Summary,
    Description,
    Start,
    End,
    Rrule,
    Attendees,
}

impl Field {
    pub const ALL: [Field; 6] = [
        Field::Summary,
        Field::Description,
        Field::Start,
        Field::End,
        Field::Rrule,
        Field::Attendees,
    ];

    /// The iCalendar properties that carry this field.
    pub fn properties(self) -> &'static [&'static str] {
        match self {
            Field::Summary => &["SUMMARY"],
            Field::Description => &["DESCRIPTION"],
            Field::Start => &["DTSTART"],
            Field::End => &["DTEND", "DURATION"],
            Field::Rrule => &["RRULE"],
            Field::Attendees => &["ATTENDEE"],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Field::Summary => "summary",
            Field::Description => "description",
            Field::Start => "start",
            Field::End => "end",
            Field::Rrule => "recurrence",
            Field::Attendees => "attendees",
        }
    }
}

impl Fields {
    /// The fields whose values differ between `self` and `other`.
    pub fn diff(&self, other: &Fields) -> Vec<Field> {
        Field::ALL
            .into_iter()
            .filter(|f| !self.same(other, *f))
            .collect()
    }

    pub fn same(&self, other: &Fields, f: Field) -> bool {
        match f {
            Field::Summary => self.summary == other.summary,
            Field::Description => self.description == other.description,
            Field::Start => self.start == other.start,
            Field::End => self.end == other.end,
            Field::Rrule => self.rrule == other.rrule,
            Field::Attendees => self.attendees == other.attendees,
        }
    }

    /// Copy field `f` from `other`.
    pub fn take(&mut self, other: &Fields, f: Field) {
        match f {
            Field::Summary => self.summary = other.summary.clone(),
            Field::Description => self.description = other.description.clone(),
            Field::Start => self.start = other.start.clone(),
            Field::End => self.end = other.end.clone(),
            Field::Rrule => self.rrule = other.rrule.clone(),
            Field::Attendees => self.attendees = other.attendees.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_compare_by_time_not_zone() {
        let a = When::Instant {
            unix: 100,
            tzid: Some("Europe/Paris".into()),
        };
        let b = When::Instant {
            unix: 100,
            tzid: None,
        };
        assert_eq!(a, b);
        let mut x = Fields {
            summary: "a".into(),
            start: Some(a),
            ..Fields::default()
        };
        let y = Fields {
            summary: "b".into(),
            start: Some(b),
            ..Fields::default()
        };
        assert_eq!(x.diff(&y), vec![Field::Summary]);
        x.take(&y, Field::Summary);
        assert!(x.diff(&y).is_empty());
    }
}
