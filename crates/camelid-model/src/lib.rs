//! camelid-model
