//! Transport: the TLS listener, the hyper service, limits, and the HTTPS client.
//!
//! Knows HTTP and TLS; knows nothing of SOAP beyond handing bytes to `soap::handle`.

pub mod admin;
pub mod client;
pub mod conns;
pub mod inspect;
pub mod serve;
pub mod server;
pub mod tls;
pub mod workers;
pub mod wsdl;
