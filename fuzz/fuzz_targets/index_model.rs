#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|ops: Vec<exec_router_fuzz::IndexOp>| {
    exec_router_fuzz::check_index(&ops);
});
