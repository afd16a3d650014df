//! Leaf types that several parts of the gateway name: the start error and
//! the request id header. Imports nothing from the rest of the crate.

use std::fmt;
use std::net::SocketAddr;

use http::HeaderName;

/// The request id header, generated when absent, logged, sent upstream and
/// returned.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Why the gateway could not start.
#[derive(Debug)]
pub enum StartError {
    /// An address could not be bound.
    Bind {
        /// What was to listen there (`gateway`, `demo backend `user``).
        what: String,
        /// The address.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// Anything else, described.
    Other(String),
}

impl StartError {
    pub(crate) fn bind(what: String, addr: SocketAddr, source: &std::io::Error) -> Self {
        Self::Bind {
            what,
            addr,
            source: std::io::Error::new(source.kind(), source.to_string()),
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bind { what, addr, source } => {
                write!(f, "cannot listen on {addr} for the {what}: {source}")?;
                if source.kind() == std::io::ErrorKind::AddrInUse {
                    write!(
                        f,
                        " (another process uses it: stop it, or choose another address with --listen or the config)"
                    )?;
                }
                Ok(())
            }
            Self::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Bind { source, .. } => Some(source),
            Self::Other(_) => None,
        }
    }
}
