//! netwait's aggregator: the pure domain core ([`domain`]) and the stores that keep its
//! input durable ([`store`]).

pub mod domain;
