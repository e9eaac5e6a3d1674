//! The domain core: event -> call record -> figures. No I/O, no clock, no threads: every
//! store and ingest path calls into this module, so each figure is defined once, here.

pub mod arguments;
pub mod calendar;
pub mod call;
pub mod callbook;
pub mod cells;
pub mod config;
pub mod dedupe;
pub mod derived;
pub mod event;
pub mod figures;
pub mod figures_sql;
pub mod json_line;
pub mod key_runs;
pub mod key_table;
pub mod limits;
pub mod line_scan;
pub mod open_calls;
pub mod plain_line;
pub mod privacy;
#[cfg(test)]
mod random_edits;
pub mod raw_event;
pub mod reject;
pub mod reports;
pub mod state_chunks;
pub mod time;
pub mod transitions;
pub mod validate;
pub mod varint;
