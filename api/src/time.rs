//! Conversions between the domain's millisecond timestamps and RFC 3339.

use chrono::{DateTime, Utc};
use invigil_actors::domain::Timestamp;

pub fn to_datetime(timestamp: Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(timestamp.as_millis()).unwrap_or_default()
}

pub fn to_timestamp(datetime: DateTime<Utc>) -> Timestamp {
    Timestamp::from_millis(datetime.timestamp_millis())
}
