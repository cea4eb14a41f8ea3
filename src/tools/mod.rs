//! Tools an integrator points at any endpoint, dkd or not: `call` (one signed request),
//! `probe` (a monitoring check), `check` (the compliance checks before go-live).

pub mod call;
pub mod check;
pub mod probe;
