//! The framework's own integration tests live in tests/*.rs.
