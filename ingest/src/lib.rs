//! netwait's ingest: turns input (NDJSON files, pushed lines and messages, PBX logs and
//! call records) into the encoded records the engine stages: valid events (caller
//! already pseudonymised) and dead letters with their reason, source and position.

pub mod bom;
pub mod cdr;
pub mod decoded;
pub mod format;
pub mod kafka;
pub mod lines;
pub mod parse;
pub mod pipeline;
pub mod proto_event;
pub mod queue_log;
pub mod source;
pub mod tail;
