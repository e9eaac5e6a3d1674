//! netwait's aggregator: the stores that keep the input durable ([`store`]) and the
//! [`engine`] that joins them to the domain core (the `netwait-domain` crate, re-exported
//! as [`domain`] so that its paths read the same everywhere).

pub use netwait_domain as domain;
pub mod engine;
pub mod observe;
pub mod parallel_scan;
pub mod published;
pub mod random;
pub mod store;
