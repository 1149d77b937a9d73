//! Reassembly of streamed responses into the message the model wrote.
