//! Wire types that the server and clients share: a listing entry and a
//! password that never prints.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One entry of an `ls` listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    pub name: String,
    pub size: u64,
    /// Unix seconds.
    pub mtime: u64,
    /// `None` until known for a file placed by other means.
    pub md5: Option<String>,
}

/// A password: its `Debug` and `Display` never show it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(s: impl Into<String>) -> Password {
        Password(s.into())
    }

    /// The secret itself, for hashing or sending.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}
