//! Record batches: the v2 header (parsed and validated without decoding records), the
//! compression codecs, record decoding for the few places that must look inside, and a builder.

pub mod batch;
pub mod builder;
pub mod codec;
pub mod control;
pub mod recompress;
pub mod records;
