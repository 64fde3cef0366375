//! Protocol client.
