//! Fuzzes the protobuf request-body decoder (`k8s\0` envelope, then the typed message walked into
//! JSON): any bytes must give an object or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    skiff::apiserver::protobuf::fuzz_decode(data);
});
