//! `gradcode train`: the MPI job (or the serial reference with --reference).
