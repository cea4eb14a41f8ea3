//! The SuwiML message bodies dkd reads and writes, and the types they are made of.
//!
//! No I/O, no envelope: `soap` hands this module a body element and takes back bytes.

pub mod fwi;
pub mod gsd;
pub mod model;
pub mod types;
pub mod verwijsindex;
