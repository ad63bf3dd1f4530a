//! Coordinators: producer ids (this file's siblings), transactions; the group coordinator
//! lives beside them.

pub mod producer_ids;
pub mod transaction;
