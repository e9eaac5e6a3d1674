//! netwait's aggregator: the pure domain core ([`domain`]), the stores that keep its input
//! durable ([`store`]), and the [`engine`] that joins them.

pub mod domain;
pub mod engine;
pub mod observe;
pub mod published;
pub mod store;
