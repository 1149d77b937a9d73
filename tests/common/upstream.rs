//! Test upstreams (HTTP/HTTPS on 127.0.0.1:0) and the test CA.
