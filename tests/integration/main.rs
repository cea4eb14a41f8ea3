//! Integration tests: the real server on 127.0.0.1:0 over mutual TLS.

mod admin;
mod chain;
mod check;
mod cli;
mod common;
mod crash;
mod external;
mod gsd;
mod ha;
mod import;
mod interop;
mod layers;
mod limits;
mod node_interop;
mod ops;
mod probe;
mod scenario;
mod schemas;
mod shared;
mod signals;
mod transport;
mod wssec;
mod xmlsec_interop;
