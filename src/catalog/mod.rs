//! The media catalog. Today only its pure core: house IDs from the naming template. The store,
//! search, users and rights come with the service (issue 4).

pub mod naming;
