//! The IB role: what only the Inlichtingenbureau does. It keeps the verwijsindex the gemeenten
//! push (`service::verwijsindex`), routes a `GSDReintegratieInfo` question to the gemeenten that
//! hold the BSN and merges their answers (`service::reintegratie_info` over the `Forward` trait;
//! `forward`: the signed call to one gemeente), and serves each gemeente its Toets LKS reports
//! (`portal`).

pub mod forward;
pub mod portal;
pub mod service;
