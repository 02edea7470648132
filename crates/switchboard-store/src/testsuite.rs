//! The behaviour every Store backend must show. Each backend's integration tests call
//! [`run_all`] with a factory that opens a fresh, migrated, empty store.
