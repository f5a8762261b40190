#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|case: exec_router_fuzz::PriceCase| {
    exec_router_fuzz::check_pricing(&case);
});
