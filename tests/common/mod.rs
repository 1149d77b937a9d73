//! Shared integration-test helpers: real servers on 127.0.0.1:0, real
//! PostgreSQL from the managed-cluster code, real engine processes.
#![allow(dead_code, unused_imports)]

pub mod db;
pub mod engine;
pub mod tls_pg;
pub mod upstream;
