//! Why an input was rejected (spec §1). Every reject carries one of these reasons to the
//! dead-letter store; none of them echoes field values (a value may be personal data).

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Reject {
    #[error("line longer than 65536 bytes")]
    TooLong,
    #[error("line is not valid UTF-8")]
    NotUtf8,
    #[error("empty line")]
    Empty,
    #[error("invalid JSON at byte {at}: {what}")]
    Json { at: usize, what: &'static str },
    #[error("not a JSON object")]
    NotObject,
    #[error("lone surrogate escape in a string")]
    LoneSurrogate,
    #[error("duplicate key `{0}`")]
    DuplicateKey(String),
    #[error("missing required field `{0}`")]
    Missing(&'static str),
    #[error("field `{field}` must be {expected}, not {got}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        got: &'static str,
    },
    #[error("field `{0}` must be 1 to 128 characters")]
    BadLength(&'static str),
    #[error("unknown event `type`")]
    BadType,
    #[error("`booking` must be \"book\", \"cancel\" or \"move\"")]
    BadBooking,
    #[error("`ts` is not an RFC 3339 date-time with offset")]
    BadTs,
    #[error("`ts` is outside 1970-01-01T00:00Z .. 2101-01-01T00:00Z")]
    TsOutOfRange,
    // Damage of the PBX formats (queue_log rows, call records), read row by row.
    #[error("{0} NUL bytes (the file was cut by a crash while it was written)")]
    NulRun(usize),
    #[error("incomplete row (cut short, no line end)")]
    Truncated,
    #[error("{got} fields, {want} expected")]
    FieldCount { got: usize, want: &'static str },
    #[error("the time field is neither epoch seconds nor a local date-time")]
    BadRowTime,
    #[error("call record without any instant")]
    NoInstant,
    #[error("`{0}` must be a list of kind@ts entries separated by `;`")]
    BadList(&'static str),
    // Messages of a stream (Kafka) that say how their payload is encoded.
    #[error("not a valid protobuf `{0}`")]
    Protobuf(&'static str),
    #[error("unsupported content type (application/x-ndjson or application/x-protobuf)")]
    ContentType,
    /// Aggregators that share a group's partitions count each call where its partition
    /// is: its events must all be in that one, which keying them by call id ensures.
    #[error("the message key is not the event's call_id (aggregators sharing partitions)")]
    KeyNotCallId,
}

impl Reject {
    /// A stable, machine-readable code for the reason (for counting and filtering).
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLong => "too_long",
            Self::NotUtf8 => "not_utf8",
            Self::Empty => "empty",
            Self::Json { .. } => "invalid_json",
            Self::NotObject => "not_object",
            Self::LoneSurrogate => "lone_surrogate",
            Self::DuplicateKey(_) => "duplicate_key",
            Self::Missing(_) => "missing_field",
            Self::WrongType { .. } => "wrong_type",
            Self::BadLength(_) => "bad_length",
            Self::BadType => "bad_type",
            Self::BadBooking => "bad_booking",
            Self::BadTs => "bad_ts",
            Self::TsOutOfRange => "ts_out_of_range",
            Self::NulRun(_) => "nul_bytes",
            Self::Truncated => "truncated",
            Self::FieldCount { .. } => "field_count",
            Self::BadRowTime => "bad_time",
            Self::NoInstant => "no_instant",
            Self::BadList(_) => "bad_list",
            Self::Protobuf(_) => "invalid_protobuf",
            Self::ContentType => "bad_content_type",
            Self::KeyNotCallId => "key_not_call_id",
        }
    }
}
