//! Checkers of recorded histories, one property per file.
