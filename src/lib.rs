//! dkd: a gemeente's Digitaal Klantdossier (DKD) endpoint for the re-integration chain.
//!
//! Layers, with dependencies pointing one way (see ARCHITECTURE.md):
//! `http` (transport, TLS) → `soap` (envelope, WS-Addressing, faults) → `service` (operations) →
//! `store` (sled). `suwiml` (message bodies and types) and `xml` are leaves used by all; `app`
//! wires them from a `config`; `certs` reads OINs and makes the development PKI.

pub mod app;
pub mod call;
pub mod certs;
pub mod check;
pub mod cli;
pub mod config;
pub mod control;
pub mod demo;
pub mod fetch;
pub mod http;
pub mod import;
pub mod ops;
pub mod probe;
pub mod push;
pub mod report;
pub mod scenario;
pub mod service;
pub mod signals;
pub mod soap;
pub mod store;
pub mod suwiml;
pub mod xml;
