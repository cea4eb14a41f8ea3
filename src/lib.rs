//! dkd: a gemeente's Digitaal Klantdossier (DKD) endpoint for the re-integration chain, and the
//! IB's side of it for chain tests.
//!
//! Layers, with dependencies pointing one way (see ARCHITECTURE.md): `http` (transport, TLS) →
//! `soap` (envelope, WS-Addressing, WS-Security, faults) → the operations (`gemeente::service`,
//! `ib::verwijsindex`, `ib::route`, `ib::signals`, `retention`) → `store` (sled or PostgreSQL).
//! `suwiml` (message bodies and types) and `xml` are leaves used by all. The roles: `gemeente` (answering, the outbox sender, the
//! Toets LKS fetch) and `ib` (the verwijsindex, routing, the portal). `app` wires them from a
//! `config`; `tools` are the integrator's (`call`, `probe`, `check`); `chain` is the demo and the
//! misbehaving gemeenten of chain tests.

pub mod app;
pub mod certs;
pub mod chain;
pub mod cli;
pub mod config;
pub mod control;
pub mod gemeente;
pub mod http;
pub mod ib;
pub mod import;
pub mod ops;
pub mod report;
pub mod retention;
pub mod signals;
pub mod soap;
pub mod store;
pub mod suwiml;
pub mod tools;
pub mod xml;
