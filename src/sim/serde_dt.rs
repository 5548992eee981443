//! RFC 3339 (de)serialisation of `DateTime<Utc>` for the control surface
//! (chrono is built without its `serde` feature).

use chrono::{DateTime, Utc};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

pub(crate) fn parse(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

fn one<E: serde::de::Error>(s: &str) -> Result<DateTime<Utc>, E> {
    parse(s).ok_or_else(|| E::custom(format!("not an RFC 3339 date-time: {s:?}")))
}

pub(crate) mod required {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        one(&s)
    }
}

pub(crate) mod optional {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => one(&s).map(Some),
        }
    }
}

pub(crate) mod list {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<DateTime<Utc>>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| parse(s).ok_or_else(|| D::Error::custom(format!("bad date-time {s:?}"))))
            .collect()
    }
}
