//! The conformance suite against the in-memory reference log.

mailledger_core::conformance_tests!(mailledger_core::conformance::open_memory);
