//! Starting and stopping the ccproxy binary and engines for tests.
