//! Rebuilds the crate when a migration is added: `sqlx::migrate!()` embeds the files of
//! `migrations/` at compile time, and cargo only notices changes to files it already knows.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
