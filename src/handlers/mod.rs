//! One file per API family; each decodes its request, acts through the broker, and encodes
//! its response at the request's version.

pub mod admin;
pub mod api_versions;
pub mod broker_registration;
pub mod configs;
pub mod fetch;
pub mod groups;
pub mod list_offsets;
pub mod log_dirs;
pub mod metadata;
pub mod produce;
pub mod quorum;
pub mod txn;
