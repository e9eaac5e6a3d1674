//! netwait's ClickHouse store (issue 12 items 2 and 4): the [`EventStore`] of the "at
//! scale" mode ([`store::ClickHouseStore`]), its schema and migrations ([`schema`]),
//! and the queries that answer the API from the derived cells ([`answers`]).
//!
//! [`EventStore`]: netwait_aggregator::store::EventStore

pub mod answers;
pub mod conn;
pub mod lease;
pub mod log_state;
pub mod replays;
pub mod rows;
pub mod schema;
pub mod shard;
pub mod store;

pub use conn::{Conn, DEFAULT_DATABASE, Error, Retry, Target, migrate};
pub use lease::WhenHeld;
pub use shard::Shard;
pub use store::ClickHouseStore;
