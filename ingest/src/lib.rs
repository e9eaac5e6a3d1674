//! netwait's ingest: turns input (NDJSON files, pushed lines and messages) into the
//! encoded records the engine stages: valid events (caller already pseudonymised) and
//! dead letters with their reason, source and position.

pub mod bom;
pub mod lines;
pub mod parse;
pub mod pipeline;
pub mod source;
