//! camelid-formats
