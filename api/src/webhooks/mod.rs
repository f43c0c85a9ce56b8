//! Provider webhook adapters.
