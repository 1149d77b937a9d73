//! A throwaway PostgreSQL database per test, from the managed-cluster code.
