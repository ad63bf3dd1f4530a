//! Helpers for byte-level protocol cases; the cases live in tests/.
