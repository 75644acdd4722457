use thiserror::Error;

/// Why a raw message could not be turned into a raw event.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The bytes are not a single-object Avro message of the expected schema.
    #[error("not a valid Avro single-object message for schema {schema}: {source}")]
    Avro {
        /// Full name of the expected schema.
        schema: &'static str,
        /// The decoder's own error.
        #[source]
        source: Box<apache_avro::Error>,
    },
    /// The datum does not follow the schema its header names.
    #[error("not a valid Avro datum of schema {schema}: {reason}")]
    AvroDatum {
        /// Full name of the schema.
        schema: &'static str,
        /// What is wrong, and where.
        reason: String,
    },
    /// Bytes were left over after the Avro datum.
    #[error("{0} trailing bytes after the Avro datum")]
    TrailingBytes(usize),
    /// The message is JSON but not of the expected shape.
    #[error("invalid JSON event: {0}")]
    Json(#[from] serde_json::Error),
    /// The message starts neither with the Avro single-object marker nor with `{`.
    #[error("unknown encoding: neither an Avro single-object message (C3 01) nor a JSON object")]
    UnknownEncoding,
}
