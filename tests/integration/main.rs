//! Integration tests: the real server on 127.0.0.1:0 over mutual TLS.

mod cli;
mod common;
mod gsd;
mod interop;
mod schemas;
mod transport;
mod wssec;
mod xmlsec_interop;
