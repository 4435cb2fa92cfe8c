//! Converters from LIBSVM, IDX and CSV text (gzip / bzip2 read transparently) into [`crate::data::Dataset`].
