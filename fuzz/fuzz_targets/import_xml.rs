//! The XML import reader and the import's validation (`dkd::import::import`, dry run, delta and
//! full mode). Errors and rejected rows are expected; a panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dkd_fuzz::run_import(dkd::import::Format::Xml, data);
});
