//! The chain in one machine, for demos and chain tests: `demo` (the demo data and configurations,
//! and N emulated gemeenten), `scenario` (a gemeente that misbehaves on purpose).

pub mod demo;
pub mod scenario;
