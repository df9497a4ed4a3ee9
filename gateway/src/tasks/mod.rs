//! Client tasks: how one reads as Meilisearch shows it, aggregated from its node tasks
//! ([`view`]), and its outcome recorded once it is final ([`outcomes`]); Meilisearch's task
//! filters ([`query`]).

pub mod outcomes;
pub mod query;
pub mod view;
