//! Fuzzes the patch engines (JSON patch, merge patch, strategic merge patch): the input is a
//! document and a patch separated by a NUL byte, and any input must give a result or an error,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    skiff::apiserver::patch::fuzz_patch(data);
});
