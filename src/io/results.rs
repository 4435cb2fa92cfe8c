//! Results writer.
