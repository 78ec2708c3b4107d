//! Jepsen-style scenario files (`scenarios/*.toml`).
