//! Placeholder replaced in the bench commit.
fn main() {}
