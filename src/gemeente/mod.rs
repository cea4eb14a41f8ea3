//! The gemeente role: what only a gemeente does. It answers the IB's `GSDReintegratieInfo` from
//! its own index (`service`), keeps the IB's verwijsindex current (`push`: the outbox sender), and
//! fetches the IB's Toets LKS reports into its vangnetter cases (`fetch`).

pub mod fetch;
pub mod push;
pub mod service;
