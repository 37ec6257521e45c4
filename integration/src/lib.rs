//! jilo's cross-crate tests and benchmarks live in `tests/` and `benches/`; this library is empty.
